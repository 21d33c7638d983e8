#include "sollol/curl_uv.h"

#include "sollol/log.h"

#include <stdlib.h>

/* One watched socket. Freed in its handle's close callback, never earlier:
 * libuv may still reference the handle until then. */
struct sol_curl_sock {
    uv_poll_t poll;
    struct sol_curl_uv *cu;
    curl_socket_t fd;
    struct sol_curl_sock *prev, *next; /* cu->watches, so close can reach all */
};

static void unlink_watch(struct sol_curl_uv *cu, struct sol_curl_sock *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        cu->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void reap_finished(struct sol_curl_uv *cu)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(cu->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct sol_curl_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(cu->multi, easy);
        if (x) {
            x->added = 0;
            cu->running--;
            if (x->on_done)
                x->on_done(x, result);
        }
    }
}

static void on_sock_event(uv_poll_t *p, int status, int events)
{
    struct sol_curl_sock *w = p->data;
    struct sol_curl_uv *cu = w->cu;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(cu->multi, w->fd, flags, &running);
    reap_finished(cu);
}

static void on_timeout(uv_timer_t *t)
{
    struct sol_curl_uv *cu = t->data;
    int running;
    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    reap_finished(cu);
}

/* CURLMOPT_TIMERFUNCTION. libcurl may ask for 0 ms: never call
 * socket_action from here (we are inside libcurl); a 0 ms uv timer fires on
 * the next loop iteration, which is what libcurl wants. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct sol_curl_uv *cu = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&cu->timer);
    else
        uv_timer_start(&cu->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_watch_closed(uv_handle_t *h)
{
    struct sol_curl_sock *w = h->data;
    struct sol_curl_uv *cu = w->cu;
    free(w);
    if (--cu->handles_open == 0 && cu->on_closed)
        cu->on_closed(cu);
}

static void close_watch(struct sol_curl_uv *cu, struct sol_curl_sock *w)
{
    uv_poll_stop(&w->poll);
    unlink_watch(cu, w);
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct sol_curl_uv *cu = userp;
    struct sol_curl_sock *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            curl_multi_assign(cu->multi, fd, NULL);
            close_watch(cu, w);
        }
        return 0;
    }
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return -1;
        w->cu = cu;
        w->fd = fd;
        if (uv_poll_init_socket(cu->loop, &w->poll, fd) < 0) {
            free(w);
            return -1;
        }
        w->poll.data = w;
        w->next = cu->watches;
        if (w->next)
            w->next->prev = w;
        cu->watches = w;
        cu->handles_open++;
        curl_multi_assign(cu->multi, fd, w);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_sock_event);
    return 0;
}

int sol_curl_uv_init(struct sol_curl_uv *cu, uv_loop_t *loop, long max_connections)
{
    cu->loop = loop;
    cu->running = 0;
    cu->handles_open = 0;
    cu->on_closed = NULL;
    cu->watches = NULL;
    cu->multi = curl_multi_init();
    if (!cu->multi)
        return -1;
    uv_timer_init(loop, &cu->timer);
    cu->timer.data = cu;
    cu->handles_open = 1;
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    if (max_connections > 0)
        curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS, max_connections);
    return 0;
}

int sol_curl_uv_add(struct sol_curl_uv *cu, struct sol_curl_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    CURLMcode rc = curl_multi_add_handle(cu->multi, x->easy);
    if (rc != CURLM_OK) {
        SOL_ERROR("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -1;
    }
    x->added = 1;
    cu->running++;
    return 0;
}

void sol_curl_uv_cancel(struct sol_curl_uv *cu, struct sol_curl_xfer *x)
{
    if (!x->added)
        return;
    curl_multi_remove_handle(cu->multi, x->easy);
    x->added = 0;
    cu->running--;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sol_curl_uv *cu = h->data;
    if (--cu->handles_open == 0 && cu->on_closed)
        cu->on_closed(cu);
}

void sol_curl_uv_close(struct sol_curl_uv *cu, void (*on_closed)(struct sol_curl_uv *cu))
{
    cu->on_closed = on_closed;
    /* Cleaning up the multi closes cached connections; libcurl reports
     * CURL_POLL_REMOVE for them, which closes their watches. */
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    /* Some libcurl versions close cached connections without telling the
     * socket callback: close whatever watches are left. */
    while (cu->watches)
        close_watch(cu, cu->watches);
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, on_timer_closed);
}
