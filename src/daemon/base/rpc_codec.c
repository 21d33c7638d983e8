/*
 * rpc_codec.c - ggml RPC messages for the pre-flight (see rpc_codec.h).
 */
#include "base/rpc_codec.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_le(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static size_t header(unsigned char *out, unsigned cmd, uint64_t size)
{
    out[0] = (unsigned char)cmd;
    put_le(out + 1, size, 8);
    return 9;
}

size_t sol_rpc_encode_hello(unsigned char *out, int v4)
{
    size_t n = header(out, SOL_RPC_CMD_HELLO, v4 ? SOL_RPC_HELLO_V4_CAPS : 0);
    if (v4) {
        memset(out + n, 0, SOL_RPC_HELLO_V4_CAPS);
        n += SOL_RPC_HELLO_V4_CAPS;
    }
    return n;
}

size_t sol_rpc_encode_device_count(unsigned char *out)
{
    return header(out, SOL_RPC_CMD_DEVICE_COUNT, 0);
}

size_t sol_rpc_encode_device_memory(unsigned char *out, uint32_t device, unsigned server_major)
{
    if (server_major < 3)
        return header(out, SOL_RPC_CMD_GET_DEVICE_MEMORY, 0);
    size_t n = header(out, SOL_RPC_CMD_GET_DEVICE_MEMORY, 4);
    put_le(out + n, device, 4);
    return n + 4;
}

long sol_rpc_frame_reply(const unsigned char *in, size_t len, size_t expect,
                         const unsigned char **payload)
{
    if (len < 8)
        return 0;
    uint64_t size = get_le(in, 8);
    if (size != expect)
        return -1;
    if (len - 8 < expect)
        return 0;
    *payload = in + 8;
    return (long)(8 + expect);
}

size_t sol_rpc_hello_reply_size(int v4)
{
    return v4 ? 4 + SOL_RPC_HELLO_V4_CAPS : 3;
}

int sol_rpc_decode_hello(const unsigned char *p, size_t n, int v4, struct sol_rpc_version *out)
{
    if (n != sol_rpc_hello_reply_size(v4))
        return -1;
    out->major = p[0];
    out->minor = p[1];
    out->patch = p[2];
    return 0;
}

int sol_rpc_decode_device_count(const unsigned char *p, size_t n, uint32_t *count)
{
    if (n != 4)
        return -1;
    *count = (uint32_t)get_le(p, 4);
    return 0;
}

int sol_rpc_decode_device_memory(const unsigned char *p, size_t n, uint64_t *free_b,
                                 uint64_t *total_b)
{
    if (n != 16)
        return -1;
    *free_b = get_le(p, 8);
    *total_b = get_le(p + 8, 8);
    return 0;
}

int sol_rpc_version_compatible(const struct sol_rpc_version *ref, const struct sol_rpc_version *got,
                               char *why, size_t whylen)
{
    const char *what = got->major != ref->major   ? "major differs"
                       : got->minor != ref->minor ? "minor differs"
                                                  : NULL;
    if (!what)
        return 1;
    snprintf(why, whylen, "protocol %u.%u.%u, expected %u.%u.x (%s)", got->major, got->minor,
             got->patch, ref->major, ref->minor, what);
    return 0;
}

int sol_rpc_version_parse(const char *s, struct sol_rpc_version *out)
{
    if (!s)
        return -1;
    if (*s == 'v' || *s == 'V')
        s++;
    unsigned v[3] = {0, 0, 0};
    int parts = 0;
    while (parts < 3) {
        if (*s < '0' || *s > '9')
            return -1;
        char *end;
        unsigned long x = strtoul(s, &end, 10);
        if (x > 255)
            return -1;
        v[parts++] = (unsigned)x;
        s = end;
        if (*s != '.')
            break;
        s++;
    }
    if (*s || parts < 2)
        return -1;
    out->major = v[0];
    out->minor = v[1];
    out->patch = v[2];
    return 0;
}

/* ---- backend lists ------------------------------------------------------- */

static int parse_one(const char *s, size_t len, struct sol_rpc_addr *a, char *err, size_t errlen)
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (!len) {
        snprintf(err, errlen, "empty backend address");
        return -1;
    }
    const char *host = s;
    size_t hlen = len;
    const char *port = NULL;
    size_t plen = 0;
    if (*s == '[') {
        const char *rb = memchr(s, ']', len);
        if (!rb) {
            snprintf(err, errlen, "invalid backend address '%.*s'", (int)len, s);
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(rb - s - 1);
        if ((size_t)(rb - s) + 1 < len) {
            if (rb[1] != ':') {
                snprintf(err, errlen, "invalid backend address '%.*s'", (int)len, s);
                return -1;
            }
            port = rb + 2;
            plen = len - (size_t)(rb - s) - 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) == NULL) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
            plen = len - hlen - 1;
        }
    }
    if (hlen == 0 || hlen >= sizeof a->host) {
        snprintf(err, errlen, "invalid backend host in '%.*s'", (int)len, s);
        return -1;
    }
    for (size_t i = 0; i < hlen; i++)
        if (!(isalnum((unsigned char)host[i]) || host[i] == '.' || host[i] == '-' ||
              host[i] == '_' || host[i] == ':')) {
            snprintf(err, errlen, "invalid backend host in '%.*s'", (int)len, s);
            return -1;
        }
    long p = SOL_RPC_DEFAULT_PORT;
    if (port) {
        char buf[8];
        if (plen == 0 || plen >= sizeof buf) {
            snprintf(err, errlen, "invalid backend port in '%.*s'", (int)len, s);
            return -1;
        }
        memcpy(buf, port, plen);
        buf[plen] = '\0';
        char *end;
        p = strtol(buf, &end, 10);
        if (*end || p < 1 || p > 65535) {
            snprintf(err, errlen, "invalid backend port in '%.*s'", (int)len, s);
            return -1;
        }
    }
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    a->port = (int)p;
    return 0;
}

static int add_addr(const struct sol_rpc_addr *a, struct sol_rpc_addr *out, size_t cap, size_t *n,
                    char *err, size_t errlen)
{
    for (size_t i = 0; out && i < *n && i < cap; i++)
        if (strcmp(out[i].host, a->host) == 0 && out[i].port == a->port)
            return 0; /* listed twice: one backend */
    if (*n >= SOL_RPC_MAX_BACKENDS) {
        snprintf(err, errlen, "too many backends (at most %d)", SOL_RPC_MAX_BACKENDS);
        return -1;
    }
    if (out && *n < cap)
        out[*n] = *a;
    (*n)++;
    return 0;
}

int sol_rpc_parse_backends(const char *text, struct sol_rpc_addr *out, size_t cap, size_t *n,
                           char *err, size_t errlen)
{
    size_t count = 0;
    if (!text)
        text = "";
    const char *t = text;
    while (isspace((unsigned char)*t))
        t++;
    struct sol_rpc_addr a;
    if (*t == '[') {
        cJSON *arr = cJSON_Parse(t);
        if (!cJSON_IsArray(arr)) {
            cJSON_Delete(arr);
            snprintf(err, errlen, "expected a JSON array of backends");
            return -1;
        }
        const cJSON *it;
        int rc = 0;
        cJSON_ArrayForEach(it, arr)
        {
            if (cJSON_IsString(it)) {
                rc = parse_one(it->valuestring, strlen(it->valuestring), &a, err, errlen);
            } else if (cJSON_IsObject(it)) {
                const cJSON *h = cJSON_GetObjectItemCaseSensitive(it, "host");
                const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "port");
                if (!cJSON_IsString(h) || (p && !cJSON_IsNumber(p))) {
                    snprintf(err, errlen,
                             "a backend object needs \"host\" (string) and "
                             "\"port\" (number)");
                    rc = -1;
                } else {
                    rc = parse_one(h->valuestring, strlen(h->valuestring), &a, err, errlen);
                    if (rc == 0 && p) {
                        if (p->valuedouble < 1 || p->valuedouble > 65535 ||
                            p->valuedouble != (int)p->valuedouble) {
                            snprintf(err, errlen, "invalid backend port %g", p->valuedouble);
                            rc = -1;
                        } else {
                            a.port = (int)p->valuedouble;
                        }
                    }
                }
            } else {
                snprintf(err, errlen, "a backend is an object or a \"host:port\" string");
                rc = -1;
            }
            if (rc == 0)
                rc = add_addr(&a, out, cap, &count, err, errlen);
            if (rc)
                break;
        }
        cJSON_Delete(arr);
        if (rc)
            return -1;
    } else {
        /* "h:p,h:p" or lines with # comments */
        const char *p = t;
        while (*p) {
            size_t len = strcspn(p, ",\n");
            const char *hash = memchr(p, '#', len);
            size_t use = hash ? (size_t)(hash - p) : len;
            int blank = 1;
            for (size_t i = 0; i < use; i++)
                if (!isspace((unsigned char)p[i]))
                    blank = 0;
            if (!blank && (parse_one(p, use, &a, err, errlen) < 0 ||
                           add_addr(&a, out, cap, &count, err, errlen) < 0))
                return -1;
            p += len;
            if (*p)
                p++;
        }
    }
    if (n)
        *n = count;
    return 0;
}
