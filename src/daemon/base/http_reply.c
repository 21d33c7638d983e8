#include "base/http_reply.h"

#include "sollol/fmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The local-answer context (sol_reply_local_begin). */
static struct {
    int active;
    char id[72];
    struct timespec start;
} local;

/* The CORS context (sol_reply_cors_begin): the Access-Control-Allow-Origin
 * value for replies queued now, NULL outside; `any`: it is "*". */
static struct {
    const char *origin;
    int any;
} cors;

void sol_reply_cors_begin(const char *allow_origin, int any)
{
    cors.origin = allow_origin;
    cors.any = any;
}

void sol_reply_cors_end(void)
{
    cors.origin = NULL;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

void sol_reply_local_begin(const char *request_id)
{
    local.active = 1;
    snprintf(local.id, sizeof local.id, "%s", request_id ? request_id : "");
    clock_gettime(CLOCK_MONOTONIC, &local.start);
}

void sol_reply_local_end(void)
{
    local.active = 0;
}

size_t sol_server_timing_format(char *buf, size_t len, double queue_ms, double upstream_ms,
                                double total_ms)
{
    if (!len)
        return 0;
    size_t off = 0;
    buf[0] = '\0';
    static const char *const names[3] = {
        "queue;dur=", "upstream;desc=\"first byte\";dur=", "total;dur="};
    double v[3] = {queue_ms, upstream_ms, total_ms};
    for (int i = 0; i < 3; i++) {
        if (v[i] < 0)
            continue;
        /* Once per answer: sol_fmt_fixed1 rather than snprintf("%.1f"). */
        char num[32];
        size_t nlen = sol_fmt_fixed1(num, v[i]);
        size_t name_len = strlen(names[i]);
        if ((off ? 2 : 0) + name_len + nlen >= len - off)
            break; /* the whole item fits or none of it */
        if (off)
            off = sol_cat(buf, len, off, ", ", 2);
        off = sol_cat(buf, len, off, names[i], name_len);
        off = sol_cat(buf, len, off, num, nlen);
    }
    return off;
}

static const char *openai_error_type(unsigned status)
{
    switch (status) {
    case 400:
    case 413:
    case 422:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return "api_error";
    }
}

int sol_error_body(struct sol_buf *out, unsigned status, int openai, const char *msg)
{
    int rc = 0;
    if (openai) {
        rc |= sol_buf_append_str(out, "{\"error\":{\"message\":");
        rc |= sol_buf_append_json_string(out, msg, strlen(msg));
        rc |= sol_buf_appendf(out, ",\"type\":\"%s\",\"param\":null,\"code\":null}}",
                              openai_error_type(status));
    } else {
        rc |= sol_buf_append_str(out, "{\"error\":");
        rc |= sol_buf_append_json_string(out, msg, strlen(msg));
        rc |= sol_buf_append_str(out, "}");
    }
    return rc ? -1 : 0;
}

void sol_reply_add_headers(struct MHD_Response *r, const struct sol_reply_headers *h)
{
    static const struct sol_reply_headers none;
    if (!h)
        h = &none;
    if (h->request_id)
        MHD_add_response_header(r, "X-Sollol-Request-Id", h->request_id);
    else if (local.active && local.id[0])
        MHD_add_response_header(r, "X-Sollol-Request-Id", local.id);
    if (h->server_timing) {
        MHD_add_response_header(r, "Server-Timing", h->server_timing);
    } else if (local.active) {
        char st[96];
        if (sol_server_timing_format(st, sizeof st, -1, -1, ms_since(&local.start)))
            MHD_add_response_header(r, "Server-Timing", st);
    }
    if (h->node)
        MHD_add_response_header(r, "X-Sollol-Node", h->node);
    if (h->queue_ms)
        MHD_add_response_header(r, "X-Sollol-Queue-Ms", h->queue_ms);
    if (h->explain)
        MHD_add_response_header(r, "X-Sollol-Explain", h->explain);
    if (h->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, h->allow);
    if (h->sollol_version)
        MHD_add_response_header(r, "X-Sollol-Version", h->sollol_version);
    if (cors.origin) {
        /* gin-contrib/cors's headers for an allowed origin (not a preflight). */
        MHD_add_response_header(r, "Access-Control-Allow-Origin", cors.any ? "*" : cors.origin);
        if (!cors.any)
            MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    if (h->retry_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, h->retry_after);
    if (h->close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

enum MHD_Result sol_reply(struct MHD_Connection *c, unsigned status, const char *content_type,
                          const char *body, size_t len, const struct sol_reply_headers *h)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    sol_reply_add_headers(r, h);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result sol_reply_error(struct MHD_Connection *c, unsigned status, int openai,
                                const char *msg, const struct sol_reply_headers *h)
{
    struct sol_buf b = {0};
    if (sol_error_body(&b, status, openai, msg) < 0) {
        sol_buf_free(&b);
        return MHD_NO;
    }
    enum MHD_Result ret = sol_reply(c, status, SOL_CT_JSON, b.data, b.len, h);
    sol_buf_free(&b);
    return ret;
}
