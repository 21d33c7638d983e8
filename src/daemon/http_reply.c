#include "sollol/http_reply.h"

#include <string.h>

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
    if (!h)
        return;
    if (h->request_id)
        MHD_add_response_header(r, "X-Sollol-Request-Id", h->request_id);
    if (h->node)
        MHD_add_response_header(r, "X-Sollol-Node", h->node);
    if (h->queue_ms)
        MHD_add_response_header(r, "X-Sollol-Queue-Ms", h->queue_ms);
    if (h->explain)
        MHD_add_response_header(r, "X-Sollol-Explain", h->explain);
    if (h->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, h->allow);
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
