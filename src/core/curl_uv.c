#include "sollol/curl_uv.h"

#include "sollol/log.h"

#include <stdlib.h>
#include <unistd.h>

/* One watched socket. Freed in its handle's close callback, never earlier:
 * libuv may still reference the handle until then. */
struct sol_curl_sock {
    uv_poll_t poll;
    struct sol_curl_uv *cu;
    curl_socket_t fd;
    int events;                        /* UV_ events the poll runs with; 0 = stopped */
    int wanted;                        /* libcurl watches the socket (not CURL_POLL_REMOVE) */
    struct sol_curl_sock *prev, *next; /* cu->watches, so close can reach all */
};

/*
 * Watches outlive transfers. Every transfer ends with CURL_POLL_REMOVE, even
 * when its connection goes back to the cache, and the next transfer on that
 * connection asks for the same socket again. Making and closing a uv_poll_t
 * each time cost an allocation, an ioctl and four epoll_ctl calls per
 * request; a watch is now found again by descriptor (cu->by_fd) and only
 * stopped and started (two epoll_ctl). REMOVE stops the poll at once:
 * keeping it running until the socket's next use saved those two calls too,
 * but some libcurl path closes sockets without the close callback, and a
 * poll left on a closed, reused descriptor made libuv abort (epoll_ctl
 * MOD/ADD failing; tests/e2e/test_embed.py, about one run in two). The close
 * and sockopt callbacks set in sol_curl_uv_add still stop a watch before its
 * socket goes or when its number is reborn.
 */
static struct sol_curl_sock *by_fd_get(struct sol_curl_uv *cu, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < cu->by_fd_len ? cu->by_fd[fd] : NULL;
}

static int by_fd_set(struct sol_curl_uv *cu, curl_socket_t fd, struct sol_curl_sock *w)
{
    if (fd < 0)
        return -1;
    if ((size_t)fd >= cu->by_fd_len) {
        size_t n = cu->by_fd_len ? cu->by_fd_len : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct sol_curl_sock **a = realloc(cu->by_fd, n * sizeof *a);
        if (!a)
            return -1;
        for (size_t i = cu->by_fd_len; i < n; i++)
            a[i] = NULL;
        cu->by_fd = a;
        cu->by_fd_len = n;
    }
    cu->by_fd[fd] = w;
    return 0;
}

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

static void watch_stop(struct sol_curl_sock *w)
{
    if (w->events) {
        uv_poll_stop(&w->poll);
        w->events = 0;
    }
}

static void on_sock_event(uv_poll_t *p, int status, int events)
{
    struct sol_curl_sock *w = p->data;
    struct sol_curl_uv *cu = w->cu;
    if (!w->wanted) {
        watch_stop(w); /* an event queued before the stop */
        return;
    }
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
    watch_stop(w);
    unlink_watch(cu, w);
    if (by_fd_get(cu, w->fd) == w)
        cu->by_fd[w->fd] = NULL;
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
            w->wanted = 0;
            watch_stop(w); /* at once: see above */
        }
        return 0;
    }
    if (!w && (w = by_fd_get(cu, fd)) != NULL) {
        curl_multi_assign(cu->multi, fd, w);
    } else if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return -1;
        w->cu = cu;
        w->fd = fd;
        if (by_fd_set(cu, fd, w) < 0 || uv_poll_init_socket(cu->loop, &w->poll, fd) < 0) {
            by_fd_set(cu, fd, NULL);
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
    w->wanted = 1;
    /* uv_poll_start() always removes and re-adds the descriptor: skip it
     * when nothing changes. */
    if (events != w->events) {
        if (uv_poll_start(&w->poll, events, on_sock_event) < 0)
            return -1;
        w->events = events;
    }
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: stop watching before the descriptor goes. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct sol_curl_sock *w = by_fd_get(clientp, fd);
    if (w) {
        watch_stop(w);
        w->wanted = 0;
    }
    return close(fd);
}

/* CURLOPT_SOCKOPTFUNCTION: a new socket starts with no running poll, even
 * if its number had one (belt and braces: the close callback stopped it). */
static int on_new_socket(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)purpose;
    struct sol_curl_sock *w = by_fd_get(clientp, fd);
    if (w) {
        watch_stop(w);
        w->wanted = 0;
    }
    return CURL_SOCKOPT_OK;
}

int sol_curl_uv_init(struct sol_curl_uv *cu, uv_loop_t *loop, long max_connections)
{
    cu->loop = loop;
    cu->running = 0;
    cu->handles_open = 0;
    cu->on_closed = NULL;
    cu->watches = NULL;
    cu->by_fd = NULL;
    cu->by_fd_len = 0;
    cu->n_spare = 0;
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

CURL *sol_curl_uv_easy_get(struct sol_curl_uv *cu)
{
    if (cu->n_spare)
        return cu->spare[--cu->n_spare];
    return curl_easy_init();
}

void sol_curl_uv_easy_put(struct sol_curl_uv *cu, CURL *easy)
{
    if (!easy)
        return;
    if (!cu->multi || cu->n_spare >= SOL_CURL_SPARE_EASY) {
        curl_easy_cleanup(easy);
        return;
    }
    curl_easy_reset(easy);
    cu->spare[cu->n_spare++] = easy;
}

int sol_curl_uv_add(struct sol_curl_uv *cu, struct sol_curl_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    /* Nodes are addressed directly: a proxy from the environment
     * (http_proxy, ALL_PROXY, ...) is never used. Without this libcurl
     * also looked those five variables up on every transfer. */
    curl_easy_setopt(x->easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, cu);
    curl_easy_setopt(x->easy, CURLOPT_SOCKOPTFUNCTION, on_new_socket);
    curl_easy_setopt(x->easy, CURLOPT_SOCKOPTDATA, cu);
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
    while (cu->n_spare)
        curl_easy_cleanup(cu->spare[--cu->n_spare]);
    /* Some libcurl versions close cached connections without telling the
     * socket callback: close whatever watches are left. */
    while (cu->watches)
        close_watch(cu, cu->watches);
    free(cu->by_fd);
    cu->by_fd = NULL;
    cu->by_fd_len = 0;
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, on_timer_closed);
}
