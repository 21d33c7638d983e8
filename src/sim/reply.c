/*
 * reply.c - how a handler answers: JSON success and error bodies in the
 * route's shape (Ollama's or OpenAI's), the request's one timer, and the
 * streaming plumbing (one chunk at a time, with the stall/close faults
 * counted per chunk; pre-built NDJSON lines for pull/push/create).
 * Below the handlers (api.c, infer.c, control.c) and the router (http.c).
 */
#include "sim.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sollol/log.h"

/* ---- timer ---- */

static void on_sim_timer(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    r->timer_cb(r);
}

void req_timer_start(struct sim_req *r, uint64_t delay_ns, void (*cb)(struct sim_req *r))
{
    r->timer_cb = cb;
    simhttp_timer_start(&r->h, delay_ns, on_sim_timer);
}

/* ---- JSON answers ---- */

void req_json_ok(struct sim_req *r)
{
    r->h.status = MHD_HTTP_OK;
    r->h.ctype = SIMHTTP_JSON;
}

void req_error_oai(struct sim_req *r, int status, const char *type, const char *msg, int nl)
{
    r->h.out.len = 0;
    r->h.cb_resp = 0;
    sb_puts(&r->h.out, "{\"error\":{\"message\":");
    sb_json_str(&r->h.out, msg);
    sb_puts(&r->h.out, ",\"type\":");
    sb_json_str(&r->h.out, type);
    sb_puts(&r->h.out, ",\"param\":null,\"code\":null}}");
    if (nl)
        sb_putc(&r->h.out, '\n');
    r->h.status = status;
    /* Handler errors go through Ollama's OpenAI writer (plain JSON type and
     * a newline); middleware errors through gin's c.JSON. */
    r->h.ctype = nl ? "application/json" : SIMHTTP_JSON;
    req_ready(r);
}

void req_error(struct sim_req *r, int status, const char *msg)
{
    if (route_is_v1(r->route)) {
        /* Ollama's OpenAI writer reports every handler error as api_error. */
        req_error_oai(r, status, "api_error", msg, 1);
        return;
    }
    r->h.out.len = 0;
    r->h.cb_resp = 0;
    sb_puts(&r->h.out, "{\"error\":");
    sb_json_str(&r->h.out, msg);
    sb_putc(&r->h.out, '}');
    simhttp_json(&r->h, status);
}

/* ---- streaming ---- */

void req_arm_reset(struct sim_req *r)
{
    const union MHD_ConnectionInfo *ci =
        r->h.conn ? MHD_get_connection_info(r->h.conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (!ci)
        return;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0)
        SOL_WARN("request %llu: SO_LINGER: %s", (unsigned long long)r->id, strerror(errno));
}

void req_reset_now(struct sim_req *r)
{
    const union MHD_ConnectionInfo *ci =
        r->h.conn ? MHD_get_connection_info(r->h.conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (!ci)
        return;
    /* Linux: connecting a TCP socket to AF_UNSPEC aborts it (tcp_disconnect
     * sends the RST at once); MHD then closes a dead socket. */
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    if (connect(ci->connect_fd, &sa, sizeof sa) != 0)
        SOL_DEBUG("request %llu: disconnect: %s", (unsigned long long)r->id, strerror(errno));
}

/* close/reset: end the chunked body without its last chunk, once drained. */
static void cut(struct sim_req *r)
{
    r->h.out_cut = 1;
    if (r->fault == F_RESET)
        req_arm_reset(r);
}

int stream_emit(struct sim_req *r, const char *data, size_t n)
{
    if (r->h.out_done || r->h.out_cut || r->h.cancelled)
        return 0;
    int limited = r->fault == F_STALL || fault_cuts(r->fault);
    if (limited && r->lines_out >= r->fault_arg) {
        if (fault_cuts(r->fault))
            cut(r);
        return 0;
    }
    sb_put(&r->h.out, data, n);
    r->lines_out++;
    if (limited && r->lines_out >= r->fault_arg) {
        if (fault_cuts(r->fault))
            cut(r); /* cut once this chunk is out */
        return 0;
    }
    return 1;
}

/* After producing: send headers with the first chunk, or wake the reader.
 * Like Ollama, no header goes out before there is something to send. */
void stream_flush(struct sim_req *r)
{
    if (r->h.phase == SIMHTTP_WAITING) {
        if (r->h.out.len == 0 && !r->h.out_done && !r->h.out_cut && r->lines_out == 0 &&
            !((r->fault == F_STALL || fault_cuts(r->fault)) && r->fault_arg == 0))
            return;
        r->h.cb_resp = 1;
        req_ready(r);
    } else {
        req_wake(r);
    }
}

static void lines_step(struct sim_req *r)
{
    uint64_t delay =
        r->fault == F_SLOW && r->fault_arg > 0 ? (uint64_t)r->fault_arg * 1000000ULL : 0;
    int stopped = 0;
    while (r->lines_off < r->lines.len) {
        const char *p = r->lines.p + r->lines_off;
        const char *nl = memchr(p, '\n', r->lines.len - r->lines_off);
        size_t n = nl ? (size_t)(nl - p) + 1 : r->lines.len - r->lines_off;
        int more = stream_emit(r, p, n);
        r->lines_off += n;
        if (!more) {
            stopped = 1;
            break;
        }
        if (delay && r->lines_off < r->lines.len) {
            req_timer_start(r, delay, lines_step);
            break;
        }
    }
    if (r->lines_off >= r->lines.len && !stopped)
        r->h.out_done = 1;
    stream_flush(r);
}

void stream_lines_start(struct sim_req *r)
{
    r->ik = IK_STREAM_LINES;
    r->h.status = 200;
    r->h.ctype = "application/x-ndjson";
    r->lines_off = 0;
    lines_step(r);
}
