/*
 * rpc_wire.c - the ggml RPC wire format shared by the two stand-ins.
 */
#include "standin.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

int rpc_version_parse(const char *s, struct rpc_version *v)
{
    unsigned a, b, c;
    char tail;
    if (!s || sscanf(s, "%u.%u.%u%c", &a, &b, &c, &tail) != 3 || a > 255 || b > 255 || c > 255)
        return -1;
    v->major = a;
    v->minor = b;
    v->patch = c;
    return 0;
}

int rpc_version_from_env(struct rpc_version *v)
{
    const char *s = getenv("SOLLOL_SIM_RPC_VERSION");
    if (!s || !*s)
        s = RPC_DEFAULT_VERSION;
    if (rpc_version_parse(s, v) < 0) {
        fprintf(stderr, "invalid SOLLOL_SIM_RPC_VERSION '%s' (want MAJ.MIN.PATCH)\n", s);
        return -1;
    }
    return 0;
}

size_t rpc_hello_request_size(const struct rpc_version *v)
{
    return v->major >= 4 ? RPC_CONN_CAPS_SIZE : 0;
}

size_t rpc_hello_reply_size(const struct rpc_version *v)
{
    return v->major >= 4 ? 4 + RPC_CONN_CAPS_SIZE : 3;
}

int rpc_has_device_arg(const struct rpc_version *v)
{
    return v->major >= 3;
}

int rpc_has_device_count(const struct rpc_version *v)
{
    return v->major >= 3;
}

int rpc_version_compatible(const struct rpc_version *client, const struct rpc_version *server)
{
    return server->major == client->major && server->minor <= client->minor;
}

void rpc_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void rpc_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t rpc_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t rpc_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int rpc_read_full(int fd, void *buf, size_t n, int stop_fd)
{
    uint8_t *p = buf;
    while (n) {
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
        int rc = poll(pf, stop_fd >= 0 ? 2 : 1, -1);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (stop_fd >= 0 && pf[1].revents)
            return -1;
        if (!pf[0].revents)
            continue;
        ssize_t got = recv(fd, p, n, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int rpc_write_full(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

int env_double(const char *name, double def, double min, double *out)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v < min) {
        fprintf(stderr, "invalid %s '%s'\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

void standin_abort(void)
{
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    fflush(stdout);
    fflush(stderr);
    abort();
}
