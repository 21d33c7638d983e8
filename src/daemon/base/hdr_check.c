/*
 * hdr_check.c - request targets and header fields checked before they are
 * judged or forwarded; node response headers filtered (see hdr_check.h).
 */
#include "base/hdr_check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without '%': unreserved / sub-delims / ':' / '@'. */
static int is_pchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

long sol_target_check(const char *raw, size_t len, char *out, size_t cap, const char **why)
{
    static const char *const bad_escape = "malformed percent-escape in the request path";
    if (len == 0 || raw[0] != '/') {
        *why = "the request target must be a path starting with '/'";
        return -1;
    }
    size_t i = 0, o = 0, seg_len = 0, seg_dots = 0;
    for (; i < len && raw[i] != '?'; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '/') {
            if (i > 0 && seg_len == 0) {
                *why = "empty segment ('//') in the request path";
                return -1;
            }
            if (i > 0 && seg_dots == seg_len && seg_len <= 2) {
                *why = "dot segment ('.' or '..') in the request path";
                return -1;
            }
            seg_len = seg_dots = 0;
        } else {
            if (c == '%') {
                int hi = i + 2 < len ? hexval((unsigned char)raw[i + 1]) : -1;
                int lo = i + 2 < len ? hexval((unsigned char)raw[i + 2]) : -1;
                if (hi < 0 || lo < 0) {
                    *why = bad_escape;
                    return -1;
                }
                c = (unsigned char)(hi << 4 | lo);
                i += 2;
                if (!is_pchar(c)) {
                    *why = "encoded separator, control or non-ASCII byte in the request path";
                    return -1;
                }
            } else if (!is_pchar(c)) {
                *why = "invalid byte in the request path";
                return -1;
            }
            seg_len++;
            seg_dots += c == '.';
        }
        if (out && o + 1 < cap)
            out[o] = (char)c;
        o++;
    }
    /* The last segment: "/" alone is the root; "/a/" ends in an empty one. */
    if (o > 1 && seg_len == 0) {
        *why = "empty segment (trailing '/') in the request path";
        return -1;
    }
    if (seg_len && seg_dots == seg_len && seg_len <= 2) {
        *why = "dot segment ('.' or '..') in the request path";
        return -1;
    }
    for (size_t q = i + 1; q < len; q++) {
        unsigned char c = (unsigned char)raw[q];
        if (c <= ' ' || c == 0x7f || c == '#') {
            *why = "invalid byte in the query string";
            return -1;
        }
        if (c == '%') {
            int hi = q + 2 < len ? hexval((unsigned char)raw[q + 1]) : -1;
            int lo = q + 2 < len ? hexval((unsigned char)raw[q + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                *why = "malformed or NUL percent-escape in the query string";
                return -1;
            }
            q += 2;
        }
    }
    if (out && cap)
        out[o < cap ? o : cap - 1] = '\0';
    return (long)o;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int name_is(const struct sol_hdr_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

static unsigned fail(char *msg, size_t msglen, unsigned status, const char *fmt, const char *arg,
                     size_t arglen)
{
    if (arglen > 64)
        arglen = 64;
    char safe[65];
    size_t k = 0;
    for (size_t i = 0; arg && i < arglen; i++) /* never echo control bytes */
        safe[k++] = (unsigned char)arg[i] >= 0x20 && (unsigned char)arg[i] < 0x7f ? arg[i] : '?';
    safe[k] = '\0';
    snprintf(msg, msglen, fmt, safe);
    return status;
}

/* Walks the comma-separated list of codings of one Transfer-Encoding
 * value, updating the running state over all fields. */
struct te_state {
    unsigned codings, chunked;
    int last_chunked, empty;
    const char *unknown;
    size_t unknown_len;
};

static void te_walk(struct te_state *s, const char *v, size_t n)
{
    size_t i = 0;
    for (;;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == b) {
            s->empty = 1;
        } else {
            s->codings++;
            /* A coding may carry parameters ("gzip;q=1"): compare its name. */
            size_t nl = 0;
            while (b + nl < e && v[b + nl] != ';' && v[b + nl] != ' ')
                nl++;
            s->last_chunked = nl == 7 && strncasecmp(v + b, "chunked", 7) == 0 && nl == e - b;
            if (s->last_chunked) {
                s->chunked++;
            } else if (!s->unknown) {
                s->unknown = v + b;
                s->unknown_len = e - b;
            }
        }
        if (i >= n)
            return;
        i++; /* the comma */
    }
}

unsigned sol_hdr_check_request(const struct sol_hdr_field *f, size_t n, int layout, char *msg,
                               size_t msglen)
{
    struct te_state te = {0};
    int has_te = 0;
    const struct sol_hdr_field *cl = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct sol_hdr_field *h = &f[i];
        if (h->name_len == 0)
            return fail(msg, msglen, 400, "empty header name%s", "", 0);
        for (size_t k = 0; k < h->name_len; k++)
            if (!is_tchar((unsigned char)h->name[k]))
                return fail(msg, msglen, 400,
                            "invalid header name '%s' (no space before the colon, RFC 9112)",
                            h->name, h->name_len);
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(msg, msglen, 400,
                            "invalid byte in the value of header '%s' (bare CR or control byte)",
                            h->name, h->name_len);
        }
        if (layout) {
            /* libmicrohttpd 0.9.75 parses in place: the name, the NUL that
             * replaced the colon, optional blanks, the value, then the NUL(s)
             * that replaced CRLF (or LF) and the next name. */
            uintptr_t name_end = (uintptr_t)h->name + h->name_len;
            uintptr_t v = (uintptr_t)h->value;
            int moved = v <= name_end || v - name_end > 16384;
            if (!moved && i > 0) {
                uintptr_t prev_end = (uintptr_t)f[i - 1].value + f[i - 1].value_len;
                uintptr_t start = (uintptr_t)h->name;
                moved = start <= prev_end || start - prev_end > 2;
                if (moved)
                    h = &f[i - 1];
            }
            if (moved)
                return fail(msg, msglen, 400,
                            "header '%s' is folded over lines (obs-fold) or contains a NUL byte",
                            h->name, h->name_len);
        }
        if (name_is(h, "Transfer-Encoding")) {
            has_te = 1;
            te_walk(&te, h->value, h->value_len);
        } else if (name_is(h, "Content-Length")) {
            if (cl &&
                (cl->value_len != h->value_len || memcmp(cl->value, h->value, h->value_len) != 0))
                return fail(msg, msglen, 400, "conflicting Content-Length headers%s", "", 0);
            cl = h;
        }
    }
    if (has_te) {
        if (te.empty || te.codings == 0)
            return fail(msg, msglen, 400, "empty coding in Transfer-Encoding%s", "", 0);
        if (!te.last_chunked)
            return fail(msg, msglen, 400,
                        "Transfer-Encoding must end with chunked (RFC 9112); got '%s'", te.unknown,
                        te.unknown_len);
        if (te.chunked > 1)
            return fail(msg, msglen, 400, "chunked applied more than once%s", "", 0);
        if (te.unknown)
            return fail(msg, msglen, 501,
                        "Transfer-Encoding '%s' is not implemented (only chunked)", te.unknown,
                        te.unknown_len);
    }
    return 0;
}

int sol_hdr_list_has(const char *list, size_t list_len, const char *name, size_t len)
{
    size_t i = 0;
    while (i < list_len) {
        while (i < list_len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t b = i;
        while (i < list_len && list[i] != ',' && list[i] != ' ' && list[i] != '\t')
            i++;
        if (i - b == len && len && strncasecmp(list + b, name, len) == 0)
            return 1;
        while (i < list_len && list[i] != ',')
            i++;
    }
    return 0;
}

int sol_hdr_response_keep(const char *name, size_t name_len, const char *value, size_t value_len)
{
    static const char *const drop[] = {"Connection",
                                       "Keep-Alive",
                                       "Transfer-Encoding",
                                       "Date",
                                       "Server",
                                       "Proxy-Authenticate",
                                       "Proxy-Connection",
                                       "TE",
                                       "Trailer",
                                       "Upgrade",
                                       "Content-Encoding",
                                       "Set-Cookie",
                                       "Set-Cookie2",
                                       "WWW-Authenticate",
                                       "Alt-Svc",
                                       "Strict-Transport-Security",
                                       NULL};
    for (int i = 0; drop[i]; i++)
        if (strlen(drop[i]) == name_len && strncasecmp(name, drop[i], name_len) == 0)
            return 0;
    if (name_len == 8 && strncasecmp(name, "Location", 8) == 0) {
        /* Only a path the daemon would take itself: the client comes back
         * through access control, never straight to the node. */
        const char *why;
        return sol_target_check(value, value_len, NULL, 0, &why) >= 0;
    }
    return 1;
}
