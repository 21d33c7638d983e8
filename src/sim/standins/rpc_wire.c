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

/* 1 when fd is readable, 0 to wait again (EINTR, spurious wake-up), -1 on
 * error or when stop_fd (if >= 0) became readable. */
static int wait_readable(int fd, int stop_fd)
{
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    int rc = poll(pf, stop_fd >= 0 ? 2 : 1, -1);
    if (rc < 0)
        return errno == EINTR ? 0 : -1;
    if (stop_fd >= 0 && pf[1].revents)
        return -1;
    return pf[0].revents ? 1 : 0;
}

/* Moves n bytes into rd (recv) or out of wr (send), whichever is not NULL;
 * reads wait for readability first so that stop_fd can interrupt them. */
static int io_full(int fd, uint8_t *rd, const uint8_t *wr, size_t n, int stop_fd)
{
    size_t done = 0;
    while (done < n) {
        if (rd) {
            int w = wait_readable(fd, stop_fd);
            if (w < 0)
                return -1;
            if (w == 0)
                continue;
        }
        ssize_t k =
            rd ? recv(fd, rd + done, n - done, 0) : send(fd, wr + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || (rd && errno == EAGAIN)))
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

int rpc_read_full(int fd, void *buf, size_t n, int stop_fd)
{
    return io_full(fd, buf, NULL, n, stop_fd);
}

int rpc_write_full(int fd, const void *buf, size_t n)
{
    return io_full(fd, NULL, buf, n, -1);
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
