/*
 * gate.c - the security gate every request passes on its first handler
 * call, before any body byte is read (see include/sollol/gate.h).
 */
#include "proxy/gate.h"

#include "daemon-t.h"
#include "base/http_reply.h"
#include "sollol/log.h"
#include "base/metrics.h"
#include "base/routes.h"

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
    struct sol_auth_verdict v;
    sol_auth_check(
        &d->auth, url, sol_auth_route_is_admin(sol_route_find(url)),
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        sol_now_ms(d), &v);
    if (v.status) {
        SOL_DEBUG("refused %s: %u %s", url, v.status, v.msg);
        sol_metrics_refused(&d->metrics, sol_metrics_refusal_of(v.status, 1));
        if (refusal_waits_for_body(d, conn, url, method)) {
            *held = v;
            return 2;
        }
        *out = sol_auth_refuse(conn, &v, openai);
        return 1;
    }
    *key = v.key;
    return 0;
}
