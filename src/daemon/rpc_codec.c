/*
 * rpc_codec.c - ggml RPC messages for the pre-flight (see rpc_codec.h).
 */
#include "sollol/rpc_codec.h"

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
