/*
 * simhttp.c - the simulators' HTTP core (simhttp.h): libmicrohttpd in
 * external epoll mode on the loop, and each request's lifecycle (suspend /
 * resume, hang-up watch, one timer, streaming reader, completion, deferred
 * release once every handle is closed).
 */
#include "simhttp.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sollol/log.h"

static void on_kick(uv_timer_t *t)
{
    struct simhttp *s = t->data;
    if (s->daemon && !s->stopping)
        sol_mhd_uv_run(&s->glue);
}

/* MHD 0.9.75 drops its inter-thread channel when polled externally, so
 * MHD_resume_connection() does not make MHD's epoll fd readable: run MHD on
 * the next loop iteration ourselves. A separate timer, because this may be
 * called from inside MHD_run(), after which the glue re-arms its own. */
static void kick(struct simhttp *s)
{
    if (s->kick_init && !uv_is_active((uv_handle_t *)&s->kick))
        uv_timer_start(&s->kick, on_kick, 0, 0);
}

unsigned simhttp_method_bit(const char *m)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(m, names[i]) == 0)
            return 1u << i;
    return SIMHTTP_OTHER;
}

const char *simhttp_method_name(unsigned bit)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (bit == 1u << i)
            return names[i];
    return "OTHER";
}

/* ---- handles: a request is released when the last one is closed ---- */

static void on_handle_closed(struct simhttp_req *r)
{
    if (--r->handles_open == 0)
        r->srv->cfg.ops->destroy(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

static void on_watch_closed(struct sol_hangup_watch *w)
{
    on_handle_closed(w->data);
}

static void on_timer(uv_timer_t *t)
{
    struct simhttp_req *r = t->data;
    r->timer_active = 0;
    if (r->timer_cb && !r->mhd_done && !r->cancelled)
        r->timer_cb(r);
}

void simhttp_timer_start(struct simhttp_req *r, uint64_t delay_ns,
                         void (*cb)(struct simhttp_req *r))
{
    if (!r->timer_init) {
        uv_timer_init(r->srv->loop, &r->timer);
        r->timer.data = r;
        r->timer_init = 1;
        r->handles_open++;
    }
    r->timer_cb = cb;
    r->timer_active = 1;
    /* uv timers count whole milliseconds: round up so a token is never
     * early; callers catch up by emitting everything that is due. */
    uv_timer_start(&r->timer, on_timer, (delay_ns + 999999) / 1000000, 0);
}

void simhttp_timer_stop(struct simhttp_req *r)
{
    if (r->timer_init && r->timer_active) {
        uv_timer_stop(&r->timer);
        r->timer_active = 0;
    }
}

/* ---- suspend / resume / hang-up ---- */

static void resume(struct simhttp_req *r)
{
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        kick(r->srv);
    }
}

/* Marks the request cancelled and tells the program; 0 when it already was. */
static int cancel(struct simhttp_req *r, enum simhttp_end why)
{
    if (r->mhd_done || r->cancelled)
        return 0;
    r->cancelled = 1;
    simhttp_timer_stop(r);
    if (r->srv->cfg.ops->end)
        r->srv->cfg.ops->end(r, why);
    return 1;
}

static void on_hangup(struct sol_hangup_watch *w)
{
    struct simhttp_req *r = w->data;
    if (cancel(r, SIMHTTP_HANGUP))
        resume(r); /* MHD then closes it: the handler/reader report an error */
}

static void suspend(struct simhttp_req *r)
{
    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    if (!r->watch_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci &&
            sol_hangup_watch_init(&r->watch, r->srv->loop, ci->connect_fd, on_hangup, r) == 0) {
            r->watch_init = 1;
            r->handles_open++;
        }
    }
    if (r->watch_init)
        sol_hangup_watch_start(&r->watch);
}

/* ---- responses ---- */

void simhttp_ready(struct simhttp_req *r)
{
    if (r->phase == SIMHTTP_STREAMING || r->phase == SIMHTTP_SENT)
        return;
    if (r->srv->cfg.ops->before_ready && !r->srv->cfg.ops->before_ready(r))
        return;
    r->phase = SIMHTTP_READY;
    resume(r);
}

void simhttp_wake(struct simhttp_req *r)
{
    if (r->phase == SIMHTTP_STREAMING)
        resume(r);
}

void simhttp_send(struct simhttp_req *r, int status, const char *ctype)
{
    r->cb_resp = 0;
    r->status = status;
    r->ctype = ctype;
    simhttp_ready(r);
}

void simhttp_text(struct simhttp_req *r, int status, const char *ctype, const char *body)
{
    r->out.len = 0;
    sb_puts(&r->out, body);
    simhttp_send(r, status, ctype);
}

void simhttp_json(struct simhttp_req *r, int status)
{
    simhttp_send(r, status, SIMHTTP_JSON);
}

void simhttp_stream(struct simhttp_req *r, int status, const char *ctype)
{
    r->cb_resp = 1;
    r->status = status;
    r->ctype = ctype;
    simhttp_ready(r);
}

/* MHD 0.9.75 marks a connection closed when a content reader returns
 * END_WITH_ERROR but leaves its idle loop without cleaning it up, so the
 * socket would stay open until shutdown. Connections with a non-default
 * timeout are visited on every MHD run (which cleans closed ones up): give
 * this one such a timeout and make sure MHD runs again. */
static ssize_t reader_error(struct simhttp_req *r)
{
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 86400u);
    kick(r->srv);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct simhttp_req *r = cls;
    (void)pos;
    if (r->cancelled)
        return reader_error(r);
    size_t avail = r->out.len - r->out_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out.p + r->out_off, n);
        r->out_off += n;
        if (r->out_off == r->out.len)
            r->out_off = r->out.len = 0;
        return (ssize_t)n;
    }
    if (r->out_cut)
        return reader_error(r);
    if (r->out_done) {
        if (r->srv->cfg.ops->stream_end)
            r->srv->cfg.ops->stream_end(r);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    suspend(r); /* resumed by simhttp_wake when a producer appends */
    return 0;
}

static enum MHD_Result respond(struct simhttp_req *r)
{
    struct MHD_Response *resp;
    if (r->cb_resp) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        r->phase = SIMHTTP_STREAMING;
    } else {
        /* The body lives in the request, which outlives the response: it is
         * released only after MHD's completion callback. */
        resp = MHD_create_response_from_buffer(r->out.len, r->out.len ? r->out.p : (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
        r->phase = SIMHTTP_SENT;
    }
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    for (const char *const *h = r->srv->cfg.headers; h && h[0] && h[1]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    if (r->hdr_name)
        MHD_add_response_header(resp, r->hdr_name, r->hdr_val);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (r->srv->cfg.ops->sent)
        r->srv->cfg.ops->sent(r);
    return ret;
}

/* ---- MHD callbacks ---- */

static struct simhttp_req *req_new(struct simhttp *s, struct MHD_Connection *conn,
                                   const char *method, const char *url)
{
    struct simhttp_req *r = s->cfg.ops->alloc();
    if (!r)
        return NULL;
    r->srv = s;
    r->conn = conn;
    r->method = simhttp_method_bit(method);
    str_copy(r->path, sizeof r->path, url);
    r->prev = NULL;
    r->next = s->live;
    if (s->live)
        s->live->prev = r;
    s->live = r;
    if (s->cfg.ops->begin)
        s->cfg.ops->begin(r, url);
    return r;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct simhttp *s = cls;
    (void)version;
    struct simhttp_req *r = *con_cls;
    if (!r) {
        if (s->stopping)
            return MHD_NO;
        r = req_new(s, conn, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        int taken = s->cfg.ops->body && s->cfg.ops->body(r, upload_data, n);
        if (!taken && r->body.len + n <= s->cfg.max_body)
            sb_put(&r->body, upload_data, n);
        else if (!taken)
            r->body_too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->cancelled || s->stopping)
        return MHD_NO;
    if (r->phase == SIMHTTP_RECEIVING) {
        r->phase = SIMHTTP_WAITING;
        s->cfg.ops->dispatch(r);
    }
    if (r->drop || r->cancelled)
        return MHD_NO;
    if (r->phase == SIMHTTP_READY)
        return respond(r);
    if (r->phase == SIMHTTP_WAITING)
        suspend(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct simhttp *s = cls;
    (void)conn;
    struct simhttp_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->mhd_done = 1;
    r->suspended = 0;
    if (s->cfg.ops->end)
        s->cfg.ops->end(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? SIMHTTP_DONE_OK
                                                                      : SIMHTTP_DONE_ERROR);
    simhttp_timer_stop(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    if (r->timer_init) {
        r->timer_init = 0;
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    }
    if (r->watch_init) {
        r->watch_init = 0;
        sol_hangup_watch_close(&r->watch, on_watch_closed);
    }
    if (r->handles_open == 0)
        s->cfg.ops->destroy(r);
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    struct simhttp *s = cls;
    (void)addr;
    (void)len;
    if (s->stopping)
        return MHD_NO;
    return s->cfg.ops->accept && !s->cfg.ops->accept() ? MHD_NO : MHD_YES;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!sol_log_enabled(SOL_LOG_INFO))
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    SOL_INFO("mhd: %s", line);
}

int simhttp_start(struct simhttp *s, uv_loop_t *loop, const struct simhttp_config *cfg,
                  int listen_fd)
{
    s->cfg = *cfg;
    s->loop = loop;
    struct MHD_OptionItem opts[8];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 0, NULL};
    if (cfg->log_errors)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL};
    if (cfg->connection_limit)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit, NULL};
    if (cfg->connection_memory)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                            (intptr_t)cfg->connection_memory, NULL};
    opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (cfg->log_errors)
        flags |= MHD_USE_ERROR_LOG;
    s->daemon = MHD_start_daemon(flags, 0, accept_policy, s, access_handler, s, MHD_OPTION_ARRAY,
                                 opts, MHD_OPTION_END);
    if (!s->daemon) {
        close(listen_fd);
        return -1;
    }
    uv_timer_init(loop, &s->kick);
    s->kick.data = s;
    s->kick_init = 1;
    if (sol_mhd_uv_attach(&s->glue, loop, s->daemon) < 0) {
        MHD_stop_daemon(s->daemon); /* closes listen_fd */
        s->daemon = NULL;
        uv_close((uv_handle_t *)&s->kick, NULL);
        s->kick_init = 0;
        return -1;
    }
    return 0;
}

static void on_glue_closed(struct sol_mhd_uv *glue)
{
    struct simhttp *s = SIMHTTP_OWNER(glue, struct simhttp, glue);
    /* Every suspended connection was resumed before the glue was closed, as
     * MHD_stop_daemon requires; completion callbacks run from in here. */
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (s->done)
        s->done(s);
}

void simhttp_shutdown(struct simhttp *s, void (*done)(struct simhttp *s))
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->done = done;
    /* Every request is cancelled before any gives its slot back, so that a
     * freed slot starts nobody. */
    for (struct simhttp_req *r = s->live; r; r = r->next) {
        r->cancelled = 1;
        simhttp_timer_stop(r);
    }
    for (struct simhttp_req *r = s->live; r; r = r->next) {
        if (s->cfg.ops->end)
            s->cfg.ops->end(r, SIMHTTP_SHUTDOWN);
        resume(r);
    }
    if (s->kick_init) {
        uv_close((uv_handle_t *)&s->kick, NULL);
        s->kick_init = 0;
    }
    if (s->daemon)
        sol_mhd_uv_close(&s->glue, on_glue_closed);
    else if (done)
        done(s);
}
