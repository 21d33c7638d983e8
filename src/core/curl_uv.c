#include "sollol/curl_uv.h"

#include "sollol/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/*
 * libcurl's sockets live in an epoll set of the glue's own, watched by the
 * loop through one uv_poll_t on that set (as libmicrohttpd's are). A
 * uv_poll_t per socket cost three epoll_ctl calls per proxied request
 * (uv_poll_start() always deletes before it adds, and every transfer ends
 * with CURL_POLL_REMOVE), and a poll left on a descriptor that libcurl closed
 * behind our back made libuv abort when the number came back. Here:
 *
 *  - a socket stays in the set while its connection sits in libcurl's
 *    cache, watched for input: the next transfer on it needs no epoll_ctl
 *    at all (only a change between in and out does);
 *  - input on a socket libcurl is not watching (the node closed an idle
 *    connection) removes it from the set; libcurl finds the connection dead
 *    when it next tries it;
 *  - the kernel drops a closed descriptor from the set by itself, so a
 *    socket closed without the close callback leaves only stale state here,
 *    which the sockopt callback clears when the number is reborn.
 */
struct sol_curl_fd {
    uint32_t in_set; /* EPOLLIN/EPOLLOUT the set watches; 0 = not in the set */
    int wanted;      /* libcurl watches it (not CURL_POLL_REMOVE) */
};

static struct sol_curl_fd *fd_state(struct sol_curl_uv *cu, curl_socket_t fd, int grow)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= cu->fds_len) {
        if (!grow)
            return NULL;
        size_t n = cu->fds_len ? cu->fds_len : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct sol_curl_fd *a = realloc(cu->fds, n * sizeof *a);
        if (!a)
            return NULL;
        memset(a + cu->fds_len, 0, (n - cu->fds_len) * sizeof *a);
        cu->fds = a;
        cu->fds_len = n;
    }
    return &cu->fds[fd];
}

/* Makes the set watch fd for `events` (0: not at all). 0 or -1. */
static int set_watch(struct sol_curl_uv *cu, curl_socket_t fd, struct sol_curl_fd *st,
                     uint32_t events)
{
    if (st->in_set == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.fd = fd};
    int op = !events ? EPOLL_CTL_DEL : st->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(cu->epfd, op, fd, &ev) < 0) {
        /* The set's idea of fd is stale (closed and reborn without our
         * callbacks): take the answer the kernel gives and try once more. */
        if (op == EPOLL_CTL_MOD && errno == ENOENT)
            op = EPOLL_CTL_ADD;
        else if (op == EPOLL_CTL_ADD && errno == EEXIST)
            op = EPOLL_CTL_MOD;
        else if (op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF))
            op = -1;
        else
            return -1;
        if (op >= 0 && epoll_ctl(cu->epfd, op, fd, &ev) < 0)
            return -1;
    }
    st->in_set = events;
    return 0;
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

/* The set has ready sockets: hand each to libcurl (or drop an idle one). */
static void on_set_ready(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct sol_curl_uv *cu = p->data;
    struct epoll_event ev[64];
    /* Bounded: a set that stays ready is served again on the next round. */
    for (int round = 0; round < 8; round++) {
        int n = epoll_wait(cu->epfd, ev, (int)(sizeof ev / sizeof ev[0]), 0);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            curl_socket_t fd = ev[i].data.fd;
            struct sol_curl_fd *st = fd_state(cu, fd, 0);
            if (!st || !st->in_set)
                continue; /* removed by an earlier event of this batch */
            if (!st->wanted) {
                set_watch(cu, fd, st, 0); /* idle connection closed by the node */
                continue;
            }
            int flags = 0;
            if (ev[i].events & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
            if (ev[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (ev[i].events & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
            int running;
            curl_multi_socket_action(cu->multi, fd, flags, &running);
            reap_finished(cu);
        }
        if (n < (int)(sizeof ev / sizeof ev[0]))
            break;
    }
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

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct sol_curl_uv *cu = userp;
    struct sol_curl_fd *st = fd_state(cu, fd, what != CURL_POLL_REMOVE);
    if (!st)
        return what == CURL_POLL_REMOVE ? 0 : -1;
    if (what == CURL_POLL_REMOVE) {
        st->wanted = 0;
        /* Kept in the set for input while it idles in the cache (see the
         * top); one that waited for output stops doing so. */
        if (st->in_set && st->in_set != EPOLLIN)
            set_watch(cu, fd, st, EPOLLIN);
        return 0;
    }
    uint32_t events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= EPOLLOUT;
    st->wanted = 1;
    return set_watch(cu, fd, st, events);
}

/* CURLOPT_CLOSESOCKETFUNCTION: out of the set before the descriptor goes. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct sol_curl_uv *cu = clientp;
    struct sol_curl_fd *st = fd_state(cu, fd, 0);
    if (st) {
        set_watch(cu, fd, st, 0);
        st->wanted = 0;
    }
    return close(fd);
}

/* CURLOPT_SOCKOPTFUNCTION: a new socket is in no set, whatever its number
 * was before (a socket closed without the close callback left the set when
 * it closed; only its state here was stale). libcurl opens it without
 * close-on-exec: set it, or a child started meanwhile (llama-server) keeps
 * the node connection open, and a socket closed here would stay in the set
 * through the child's copy. */
static int on_new_socket(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)purpose;
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC))
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    struct sol_curl_fd *st = fd_state(clientp, fd, 0);
    if (st)
        st->in_set = 0, st->wanted = 0;
    return CURL_SOCKOPT_OK;
}

int sol_curl_uv_init(struct sol_curl_uv *cu, uv_loop_t *loop, long max_connections)
{
    cu->loop = loop;
    cu->running = 0;
    cu->handles_open = 0;
    cu->on_closed = NULL;
    cu->fds = NULL;
    cu->fds_len = 0;
    cu->n_spare = 0;
    cu->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (cu->epfd < 0)
        return -1;
    cu->multi = curl_multi_init();
    if (!cu->multi || uv_poll_init(loop, &cu->set_poll, cu->epfd) < 0) {
        if (cu->multi)
            curl_multi_cleanup(cu->multi);
        cu->multi = NULL;
        close(cu->epfd);
        return -1;
    }
    cu->set_poll.data = cu;
    /* Cannot fail on a valid epoll descriptor just initialised. */
    uv_poll_start(&cu->set_poll, UV_READABLE, on_set_ready);
    uv_timer_init(loop, &cu->timer);
    cu->timer.data = cu;
    cu->handles_open = 2;
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

static void on_handle_closed(uv_handle_t *h)
{
    struct sol_curl_uv *cu = h->data;
    if (--cu->handles_open == 0) {
        close(cu->epfd); /* after the poll on it is gone */
        cu->epfd = -1;
        if (cu->on_closed)
            cu->on_closed(cu);
    }
}

void sol_curl_uv_close(struct sol_curl_uv *cu, void (*on_closed)(struct sol_curl_uv *cu))
{
    cu->on_closed = on_closed;
    /* Cleaning up the multi closes cached connections (through the close
     * callback, which takes them out of the set). */
    if (cu->multi)
        curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    while (cu->n_spare)
        curl_easy_cleanup(cu->spare[--cu->n_spare]);
    free(cu->fds);
    cu->fds = NULL;
    cu->fds_len = 0;
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, on_handle_closed);
    uv_poll_stop(&cu->set_poll);
    uv_close((uv_handle_t *)&cu->set_poll, on_handle_closed);
}
