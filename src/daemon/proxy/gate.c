/*
 * gate.c - the security gate every request passes on its first handler
 * call, before any body byte is read (see gate.h).
 */
#include "proxy/gate.h"

#include "daemon-t.h"
#include "base/http_reply.h"
#include "sollol/log.h"
#include "base/metrics.h"
#include "base/routes.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

/*
 * An access-control refusal of a proxied request whose body is on its way
 * is answered once the body has arrived (and been dropped unread): a client
 * that sends its whole body before reading, as most do, would otherwise
 * see its connection reset instead of the 401. With Expect: 100-continue,
 * or a body over the limit, the answer goes at once and no body comes.
 */
static int refusal_waits_for_body(struct sol_daemon *d, struct MHD_Connection *conn,
                                  const char *url, const char *method)
{
    const struct sol_route *route = sol_route_find(url);
    if (!route || !(route->methods & sol_method_bit(method)) || !sol_route_reads_body(route) ||
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT))
        return 0;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return 1;
    unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0;
    return n > 0 && n <= d->cfg->max_body_bytes;
}

/* Routes whose body the request lifecycle reads (request.c). */
static int body_route(const struct sol_route *route, const char *method)
{
    return route && (route->methods & sol_method_bit(method)) && sol_route_reads_body(route);
}

/*
 * A body on its way to a route that reads it counts against the body
 * budgets from here (limits.c): a declared length at once, a chunked body
 * as it arrives. Returns 0 (go on), 1 (refused and answered: *out) or 2
 * (a 503 to answer once the body has arrived and been dropped, as access
 * control's refusals: *held).
 */
static int body_gate(struct sol_daemon *d, struct MHD_Connection *conn, const char *url,
                     const char *method, int openai, enum MHD_Result *out,
                     struct sol_auth_verdict *held)
{
    if (!body_route(sol_route_find(url), method))
        return 0;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int chunked = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    unsigned long long n = cl && !chunked ? strtoull(cl, NULL, 10) : 0;
    if (!chunked && (n == 0 || n > d->cfg->max_body_bytes))
        return 0; /* no body, or refused 413 by request.c before it is read */
    struct sol_auth_verdict v = {0};
    v.status = sol_limits_body_begin(&d->limits, conn, n, &v.retry_after_s, v.msg, sizeof v.msg);
    if (!v.status)
        return 0;
    SOL_DEBUG("refused %s: %u %s", url, v.status, v.msg);
    sol_metrics_refused(&d->metrics,
                        v.status == 503 ? SOL_REFUSED_BODY_BUDGET : SOL_REFUSED_BODY_TOO_LARGE);
    if (v.status == 503 && refusal_waits_for_body(d, conn, url, method)) {
        *held = v;
        return 2;
    }
    char ra[16];
    snprintf(ra, sizeof ra, "%u", v.retry_after_s);
    struct sol_reply_headers h = {.close = 1, .retry_after = v.status == 503 ? ra : NULL};
    *out = sol_reply_error(conn, v.status, openai, v.msg, &h);
    return 1;
}

/* Limits first (they protect the daemon), then access control. */
int sol_gate_check(struct sol_daemon *d, struct MHD_Connection *conn, const char *url,
                   const char *method, const struct sol_auth_key **key, enum MHD_Result *out,
                   struct sol_auth_verdict *held)
{
    int openai = strncmp(url, "/v1/", 4) == 0;
    char msg[160];
    unsigned status = sol_limits_check_request(&d->limits, conn, url, msg, sizeof msg);
    if (status) {
        SOL_DEBUG("refused %s: %u %s", url, status, msg);
        sol_metrics_refused(&d->metrics, sol_metrics_refusal_of(status, 0));
        struct sol_reply_headers h = {.close = 1, .retry_after = status == 429 ? "1" : NULL};
        *out = sol_reply_error(conn, status, openai, msg, &h);
        return 1;
    }
    uint64_t now = sol_now_ms(d);
    if (sol_auth_enabled(&d->auth) && !sol_auth_is_public(&d->auth, url)) {
        /* Failed authentications per address (limits.c): once used up,
         * every request needing a key waits, valid key or not, or the
         * refusal would tell a guesser which key was right. */
        unsigned wait_s = sol_limits_auth_blocked(&d->limits, conn, now);
        if (wait_s) {
            struct sol_auth_verdict b = {.status = 429, .retry_after_s = wait_s};
            snprintf(b.msg, sizeof b.msg,
                     "too many failed authentications from this client address; retry in %u s",
                     wait_s);
            sol_metrics_refused(&d->metrics, SOL_REFUSED_AUTH_FAILURES);
            *out = sol_auth_refuse(conn, &b, openai);
            return 1;
        }
    }
    struct sol_auth_verdict v;
    sol_auth_check(
        &d->auth, url, sol_auth_route_is_admin(sol_route_find(url)),
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), now, &v);
    if (v.status) {
        SOL_DEBUG("refused %s: %u %s", url, v.status, v.msg);
        if (v.status == 401)
            sol_limits_auth_failed(&d->limits, conn, now);
        sol_metrics_refused(&d->metrics, sol_metrics_refusal_of(v.status, 1));
        if (refusal_waits_for_body(d, conn, url, method)) {
            struct sol_auth_verdict unused;
            if (body_gate(d, conn, url, method, openai, out, &unused) == 1)
                return 1;
            /* Dropped as it arrives: it holds no memory (the minimum rate
             * still applies). The first refusal is the one answered. */
            sol_limits_body_release(&d->limits, conn);
            *held = v;
            return 2;
        }
        *out = sol_auth_refuse(conn, &v, openai);
        return 1;
    }
    int body = body_gate(d, conn, url, method, openai, out, held);
    if (body)
        return body;
    *key = v.key;
    return 0;
}
