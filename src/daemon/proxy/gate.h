/*
 * gate.h - the security gate: the limits on one request (limits.c) and
 * access control (auth.c), applied on the first call of MHD's access
 * handler for each request, before its body is read.
 */
#ifndef SOLLOL_GATE_H
#define SOLLOL_GATE_H

#include "base/auth.h"

#include <microhttpd.h>

struct sol_daemon;

/*
 * Checks the request (url without query, method) on conn. Returns:
 *  0: it may go on; *key is the caller's API key (NULL when none is needed,
 *     i.e. no keys are configured or the path is public).
 *  1: refused and answered (429 too many connections from this address,
 *     414, 431, 429 too many failed authentications from this address,
 *     auth's 401/403/429, or the body budgets' 413/503 when no body is
 *     to be waited for); return *out from the handler.
 *  2: refused by access control, or 503 because the body budgets
 *     (limits.c) are full, while a body of allowed size is on its
 *     way: *held is the verdict, to be answered with sol_auth_refuse() once
 *     the body has arrived and been dropped unread (a client that writes its
 *     whole body before reading would otherwise see a reset, not the 401).
 *     Only for routes whose body the lifecycle reads (proxied, fan-out,
 *     pinned), never with Expect: 100-continue (then 1: no body comes).
 */
int sol_gate_check(struct sol_daemon *d, struct MHD_Connection *conn, const char *url,
                   const char *method, const struct sol_auth_key **key, enum MHD_Result *out,
                   struct sol_auth_verdict *held);

#endif
