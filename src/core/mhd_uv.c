#include "sollol/mhd_uv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sol_listen_socket(const char *host, int port, int backlog, int *bound_port, char *err,
                      size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *node = (host && *host) ? host : "0.0.0.0";
    int rc = getaddrinfo(node, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", node, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        /* Inherited by accepted sockets (Linux): libmicrohttpd sends a
         * response's headers and body in separate writes, and with Nagle
         * the body then waited for the client's delayed ACK (up to 40 ms:
         * p99 of 400 ms at 64 keep-alive connections). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", node, port, strerror(saved));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (bound_port && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        else
            *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

int sol_socket_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    return 0;
}

static void arm_timer(struct sol_mhd_uv *glue);
static uint64_t kick_delay_ms(const struct sol_mhd_uv *glue);

static unsigned connections(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

static void run_mhd(struct sol_mhd_uv *glue)
{
    glue->kick_pending = 0;
    unsigned before = connections(glue->daemon);
    MHD_run(glue->daemon);
    /* At its connection limit MHD stops watching the listening socket and
     * puts it back only at the start of a later run. Connections that closed
     * in this run may have freed a slot: run again, or a client waiting in
     * the backlog would wait for an unrelated event. */
    if (connections(glue->daemon) < before)
        glue->kick_pending = 1;
    arm_timer(glue);
}

/* Milliseconds to wait before a run that serves resumes (see the header):
 * the walk costs some 50-100 ns per suspended connection (a cache miss
 * each); one run per n / SOL_MHD_KICK_PER_MS ms keeps it near a tenth of
 * the time. Counting, not timing runs: a run's own work (the chunks of
 * every resumed stream) must not lengthen the window. */
static uint64_t kick_delay_ms(const struct sol_mhd_uv *glue)
{
    uint64_t ms = glue->suspended / SOL_MHD_KICK_PER_MS;
    return ms < SOL_MHD_KICK_MAX_MS ? ms : SOL_MHD_KICK_MAX_MS;
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static unsigned mhd_connections(struct sol_mhd_uv *glue)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(glue->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct sol_mhd_uv *glue = p->data;
    /* MHD accepts at most ten connections per run. A burst of new clients
     * (500 streams opened at once) then took one loop iteration per ten,
     * each as long as the other work pending: ~250 ms to first token. Run
     * again at once while a run accepted its full ten. */
    for (int i = 0; i < 32; i++) {
        unsigned before = mhd_connections(glue);
        run_mhd(glue);
        if (mhd_connections(glue) < before + 10)
            break;
    }
}

static void arm_timer(struct sol_mhd_uv *glue)
{
    MHD_UNSIGNED_LONG_LONG ms;
    uint64_t due = UINT64_MAX;
    if (MHD_get_timeout(glue->daemon, &ms) == MHD_YES)
        /* Cap so that a long idle timeout never defers MHD's housekeeping
         * (closing timed-out connections) by more than a second. */
        due = ms > 1000 ? 1000 : (uint64_t)ms;
    if (due == 0) {
        uint64_t now = uv_now(glue->loop);
        if (glue->zero_runs++ == 0)
            glue->spin_since_ms = now;
        if (glue->zero_runs > SOL_MHD_IMMEDIATE_RUNS) {
            due = 1; /* a loop iteration in between: I/O and signals are polled */
            if (glue->on_spin && now - glue->spin_since_ms >= SOL_MHD_SPIN_MS &&
                now - glue->spin_reported_ms >= SOL_MHD_SPIN_MS) {
                glue->spin_reported_ms = now;
                glue->on_spin(glue, glue->spin_since_ms);
            }
        }
    } else {
        glue->zero_runs = 0;
    }
    if (glue->kick_pending) {
        /* A resume happened during MHD_run(): run again soon. */
        uint64_t k = kick_delay_ms(glue);
        if (k < due)
            due = k;
    }
    if (due == UINT64_MAX)
        uv_timer_stop(&glue->timer);
    else
        uv_timer_start(&glue->timer, on_timer, due, 0);
}

int sol_mhd_uv_attach(struct sol_mhd_uv *glue, uv_loop_t *loop, struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info)
        return UV_EINVAL;
    glue->loop = loop;
    glue->daemon = daemon;
    glue->handles_open = 0;
    glue->kick_pending = 0;
    glue->suspended = 0;
    glue->on_closed = NULL;
    glue->zero_runs = 0;
    glue->spin_since_ms = glue->spin_reported_ms = 0;
    int rc = uv_poll_init(loop, &glue->poll, info->epoll_fd);
    if (rc < 0)
        return rc;
    glue->handles_open++;
    uv_timer_init(loop, &glue->timer);
    glue->handles_open++;
    glue->poll.data = glue;
    glue->timer.data = glue;
    rc = uv_poll_start(&glue->poll, UV_READABLE, on_poll);
    if (rc < 0)
        return rc;
    arm_timer(glue);
    return 0;
}

void sol_mhd_uv_run(struct sol_mhd_uv *glue)
{
    run_mhd(glue);
}

void sol_mhd_uv_kick(struct sol_mhd_uv *glue)
{
    if (glue->kick_pending)
        return;
    glue->kick_pending = 1;
    uint64_t k = kick_delay_ms(glue);
    /* Never push back a run the timer already has due sooner. */
    if (k && uv_is_active((uv_handle_t *)&glue->timer) && uv_timer_get_due_in(&glue->timer) <= k)
        return;
    uv_timer_start(&glue->timer, on_timer, k, 0);
}

void sol_mhd_uv_suspend(struct sol_mhd_uv *glue, struct MHD_Connection *conn)
{
    MHD_suspend_connection(conn);
    glue->suspended++;
}

void sol_mhd_uv_resume(struct sol_mhd_uv *glue, struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
    if (glue->suspended)
        glue->suspended--;
    sol_mhd_uv_kick(glue);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sol_mhd_uv *glue = h->data;
    if (--glue->handles_open == 0 && glue->on_closed)
        glue->on_closed(glue);
}

void sol_mhd_uv_close(struct sol_mhd_uv *glue, void (*on_closed)(struct sol_mhd_uv *glue))
{
    glue->on_closed = on_closed;
    uv_close((uv_handle_t *)&glue->poll, on_handle_closed);
    uv_close((uv_handle_t *)&glue->timer, on_handle_closed);
}

static void report_hangup(struct sol_hangup_watch *w)
{
    w->active = 0;
    w->hung_up = 0;
    if (w->on_hangup)
        w->on_hangup(w);
}

static void on_hangup_poll(uv_poll_t *p, int status, int events)
{
    struct sol_hangup_watch *w = p->data;
    if (status < 0 || (events & UV_DISCONNECT)) {
        uv_poll_stop(&w->poll);
        w->poll_running = 0;
        if (w->active)
            report_hangup(w);
        else
            w->hung_up = 1;
    }
}

static void on_arm(uv_timer_t *t)
{
    struct sol_hangup_watch *w = t->data;
    if (!w->active)
        return;
    if (w->hung_up) {
        report_hangup(w);
        return;
    }
    if (!w->polling) {
        if (uv_poll_init_socket(w->loop, &w->poll, w->fd) < 0)
            return; /* unwatchable: MHD sees the hang-up when resumed */
        w->poll.data = w;
        w->polling = 1;
        w->handles_open++;
    }
    if (!w->poll_running && uv_poll_start(&w->poll, UV_DISCONNECT, on_hangup_poll) == 0)
        w->poll_running = 1;
}

int sol_hangup_watch_init(struct sol_hangup_watch *w, uv_loop_t *loop, int fd,
                          void (*on_hangup)(struct sol_hangup_watch *w), void *data)
{
    memset(w, 0, sizeof *w);
    w->on_hangup = on_hangup;
    w->data = data;
    w->loop = loop;
    w->fd = fd;
    int rc = uv_timer_init(loop, &w->arm_timer);
    if (rc < 0)
        return rc;
    w->arm_timer.data = w;
    w->handles_open = 1;
    w->initialized = 1;
    return 0;
}

void sol_hangup_watch_start(struct sol_hangup_watch *w)
{
    if (!w->initialized || w->active)
        return;
    w->active = 1;
    if (w->hung_up)
        uv_timer_start(&w->arm_timer, on_arm, 0, 0); /* report it, not from here */
    else if (!w->poll_running)
        uv_timer_start(&w->arm_timer, on_arm, SOL_HANGUP_ARM_MS, 0);
}

void sol_hangup_watch_stop(struct sol_hangup_watch *w)
{
    if (!w->initialized || !w->active)
        return;
    w->active = 0;
    uv_timer_stop(&w->arm_timer); /* a running poll is kept: see the header */
}

static void on_watch_handle_closed(uv_handle_t *h)
{
    struct sol_hangup_watch *w = h->data;
    if (--w->handles_open == 0 && w->on_closed)
        w->on_closed(w);
}

int sol_hangup_watch_close(struct sol_hangup_watch *w,
                           void (*on_closed)(struct sol_hangup_watch *w))
{
    if (!w->initialized)
        return 0;
    w->initialized = 0;
    w->active = 0;
    w->on_closed = on_closed;
    uv_close((uv_handle_t *)&w->arm_timer, on_watch_handle_closed);
    if (w->polling)
        uv_close((uv_handle_t *)&w->poll, on_watch_handle_closed);
    return 1;
}
