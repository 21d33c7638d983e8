/*
 * leg.c - one upstream HTTP exchange (see leg.h).
 */
#include "sollol/leg.h"

#include <string.h>

int sol_leg_start(struct sol_leg *l, struct sol_curl_uv *cu,
                  void (*on_done)(struct sol_curl_xfer *x, CURLcode rc))
{
    l->xfer.on_done = on_done;
    if (sol_curl_uv_add(cu, &l->xfer) < 0)
        return -1;
    l->running = 1;
    return 0;
}

int sol_leg_cancel(struct sol_leg *l, struct sol_curl_uv *cu)
{
    if (!l->running)
        return 0;
    sol_curl_uv_cancel(cu, &l->xfer);
    l->running = 0;
    return 1;
}

void sol_leg_free(struct sol_leg *l)
{
    if (l->xfer.easy)
        curl_easy_cleanup(l->xfer.easy);
    l->xfer.easy = NULL;
    curl_slist_free_all(l->headers);
    l->headers = NULL;
    sol_buf_free(&l->body);
}
