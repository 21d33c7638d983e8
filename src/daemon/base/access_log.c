/*
 * access_log.c - one line per finished request (see access_log.h).
 */
#include "base/access_log.h"

#include "sollol/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Text mode: one token, never a space, quote or '=' that could fake a field. */
static int append_token(struct sol_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s || !*s)
        return sol_buf_append_str(b, "-");
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\' && *p != '=' && *p != '%') {
            rc |= sol_buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc |= sol_buf_append(b, e, 3);
        }
    }
    return rc;
}

static int append_json_or_null(struct sol_buf *b, const char *s)
{
    if (!s || !*s)
        return sol_buf_append_str(b, "null");
    return sol_buf_append_json_string(b, s, strlen(s));
}

static double ms(double seconds)
{
    return seconds > 0 ? seconds * 1000.0 : 0;
}

int sol_access_format(struct sol_buf *out, const struct sol_access_entry *e, int json,
                      const struct timespec *when)
{
    const struct sol_metrics_sample *s = e->s;
    struct tm tm;
    gmtime_r(&when->tv_sec, &tm);
    char t[96];
    snprintf(t, sizeof t, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, when->tv_nsec / 1000000);
    unsigned retries = s->attempts > 1 ? s->attempts - 1 : 0;
    int rc = 0;
    if (json) {
        rc |= sol_buf_appendf(out, "{\"time\":\"%s\",\"tag\":", t);
        rc |= append_json_or_null(out, sol_log_tag());
        /* "msg" as on every other JSON line: what a log viewer shows. */
        char msg[400];
        snprintf(msg, sizeof msg, "%s %.256s %u %s %.0f ms", e->method ? e->method : "-",
                 e->path ? e->path : "-", s->status, s->node && s->node[0] ? s->node : "-",
                 ms(s->duration_s));
        rc |= sol_buf_append_str(out, ",\"level\":\"info\",\"msg\":");
        rc |= sol_buf_append_json_string(out, msg, strlen(msg));
        rc |= sol_buf_append_str(out, ",\"kind\":\"access\",\"id\":");
        rc |= append_json_or_null(out, e->id);
        rc |= sol_buf_append_str(out, ",\"client\":");
        rc |= append_json_or_null(out, e->client);
        rc |= sol_buf_append_str(out, ",\"method\":");
        rc |= append_json_or_null(out, e->method);
        rc |= sol_buf_append_str(out, ",\"path\":");
        rc |= append_json_or_null(out, e->path);
        rc |= sol_buf_append_str(out, ",\"model\":");
        rc |= append_json_or_null(out, s->model);
        rc |= sol_buf_append_str(out, ",\"node\":");
        rc |= append_json_or_null(out, s->node);
        rc |= sol_buf_appendf(out,
                              ",\"status\":%u,\"retries\":%u,\"queue_ms\":%.0f,\"ttfb_ms\":%.1f,"
                              "\"duration_ms\":%.1f,\"prompt_tokens\":%llu,\"gen_tokens\":%llu,"
                              "\"bytes\":%llu,\"client_gone\":%s",
                              s->status, retries, ms(s->queue_s), ms(s->ttfb_s), ms(s->duration_s),
                              (unsigned long long)s->prompt_eval_count,
                              (unsigned long long)s->eval_count, (unsigned long long)s->bytes_out,
                              e->client_gone ? "true" : "false");
        if (e->cont) {
            rc |= sol_buf_append_str(out, ",\"cont\":");
            rc |= append_json_or_null(out, e->cont);
        }
        rc |= sol_buf_append_str(out, "}\n");
        return rc ? -1 : 0;
    }
    rc |= sol_buf_appendf(out, "%s %s info access id=", t, sol_log_tag());
    rc |= append_token(out, e->id);
    rc |= sol_buf_append_str(out, " client=");
    rc |= append_token(out, e->client);
    rc |= sol_buf_append_str(out, " method=");
    rc |= append_token(out, e->method);
    rc |= sol_buf_append_str(out, " path=");
    rc |= append_token(out, e->path);
    rc |= sol_buf_append_str(out, " model=");
    rc |= append_token(out, s->model);
    rc |= sol_buf_append_str(out, " node=");
    rc |= append_token(out, s->node);
    rc |=
        sol_buf_appendf(out,
                        " status=%u retries=%u queue_ms=%.0f ttfb_ms=%.1f duration_ms=%.1f "
                        "prompt_tokens=%llu gen_tokens=%llu bytes=%llu%s%s%s\n",
                        s->status, retries, ms(s->queue_s), ms(s->ttfb_s), ms(s->duration_s),
                        (unsigned long long)s->prompt_eval_count, (unsigned long long)s->eval_count,
                        (unsigned long long)s->bytes_out, e->cont ? " cont=" : "",
                        e->cont ? e->cont : "", e->client_gone ? " client_gone" : "");
    return rc ? -1 : 0;
}

void sol_access_log(const struct sol_access_entry *e)
{
    if (!sol_log_enabled(SOL_LOG_INFO))
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct sol_buf b = {0};
    if (sol_access_format(&b, e, sol_log_is_json(), &now) == 0 && b.data)
        sol_log_write_line(b.data, b.len);
    sol_buf_free(&b);
}

void sol_access_client_address(struct MHD_Connection *c, char *buf, size_t len)
{
    if (!len)
        return;
    snprintf(buf, len, "-");
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    buf[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)len);
    if (!buf[0]) /* inet_ntop failed (buffer too small) */
        snprintf(buf, len, "-");
}
