/*
 * rpc_server.c - the ggml-rpc-server stand-in: ggml's RPC server as the
 * sharded path sees it, without any tensor work. Named and behaving as the
 * current llama.cpp's (measured against it, ../shared/llama.cpp/README.md):
 * the binary is ggml-rpc-server; an unknown argument (-m/--mem too, removed
 * upstream in 2025-10) prints "error: unknown argument: X" and the usage and
 * exits 0; it has no signal handler, so SIGTERM kills it (signal 15).
 *
 * Like the real one it is a serial accept loop with a backlog of 1: it
 * serves exactly one client until that client disconnects, and only then
 * accepts the next. A second client's TCP connect can therefore succeed
 * (the kernel queues it) while its HELLO stays unanswered. It speaks the
 * protocol version of $SOLLOL_SIM_RPC_VERSION in that version's exact wire
 * form and implements HELLO, DEVICE_COUNT and GET_DEVICE_MEMORY; any other
 * command, a HELLO of the wrong size or a first command that is not HELLO
 * closes the connection without a reply, as the real server does.
 *
 * Blocking I/O on purpose: that is the real server's model, and the serial
 * behaviour is what the daemon must cope with. The self-pipe every wait
 * polls is never written (no handler, as the real server has none); it
 * stays so the waits keep one shape.
 */
#include "standin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_DEVICES 16

static int g_stop_pipe[2] = {-1, -1};

struct rpcsim {
    struct rpc_version ver;
    int ndev;
    uint64_t total[MAX_DEVICES];
    uint64_t free_[MAX_DEVICES];
    unsigned long clients;
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: ggml-rpc-server [options]\n"
               "\n"
               "options:\n"
               "  -h, --help                show this help message and exit\n"
               "  -t, --threads N           number of threads for the CPU device\n"
               "  -d, --device <dev1,...>   comma-separated list of devices\n"
               "  -H, --host HOST           host to bind to (default: 127.0.0.1)\n"
               "  -p, --port PORT           port to bind to (default: 50052; 0 = ephemeral,\n"
               "                            a stand-in extension)\n"
               "  -c, --cache               enable local file cache\n"
               "\n"
               "Stand-in of llama.cpp's rpc-server (sollol tests); knobs: SOLLOL_SIM_RPC_*\n"
               "environment variables, see docs/simulator.md.\n");
}

/* An argument the real server does not take: it complains, prints its
 * usage and exits with status 0 (sic). */
static int unknown_argument(const char *arg)
{
    fprintf(stderr, "error: unknown argument: %s\n", arg);
    usage(stderr);
    return 0;
}

/* Serves one client until it disconnects, sends something invalid, or a
 * stop signal arrives. */
static void serve_client(struct rpcsim *s, int fd)
{
    int first = 1;
    for (;;) {
        uint8_t hdr[9];
        if (rpc_read_full(fd, hdr, sizeof hdr, g_stop_pipe[0]) < 0)
            return;
        uint8_t cmd = hdr[0];
        uint64_t size = rpc_get_u64(hdr + 1);
        uint8_t in[RPC_MAX_PAYLOAD];
        uint8_t out[8 + 4 + RPC_CONN_CAPS_SIZE];
        size_t outlen = 0;
        /* HELLO must come first, and only then. */
        if (first && cmd != RPC_CMD_HELLO) {
            fprintf(stderr, "Expected HELLO command, update client\n");
            return;
        }
        if (!first && cmd == RPC_CMD_HELLO)
            return; /* HELLO is handled once, before the command loop */
        first = 0;
        switch (cmd) {
        case RPC_CMD_HELLO: {
            if (size != rpc_hello_request_size(&s->ver)) {
                fprintf(stderr,
                        "HELLO request size mismatch (%llu vs %zu) - client needs upgrade to "
                        "protocol v%u.x\n",
                        (unsigned long long)size, rpc_hello_request_size(&s->ver), s->ver.major);
                return;
            }
            if (size && rpc_read_full(fd, in, (size_t)size, g_stop_pipe[0]) < 0)
                return;
            size_t n = rpc_hello_reply_size(&s->ver);
            memset(out, 0, sizeof out);
            rpc_put_u64(out, n);
            out[8] = (uint8_t)s->ver.major;
            out[9] = (uint8_t)s->ver.minor;
            out[10] = (uint8_t)s->ver.patch;
            outlen = 8 + n; /* 4.x: pad byte and zero conn_caps (plain TCP) */
            break;
        }
        case RPC_CMD_DEVICE_COUNT:
            if (!rpc_has_device_count(&s->ver) || size != 0)
                return;
            rpc_put_u64(out, 4);
            rpc_put_u32(out + 8, (uint32_t)s->ndev);
            outlen = 12;
            break;
        case RPC_CMD_GET_DEVICE_MEMORY: {
            uint32_t dev = 0;
            if (rpc_has_device_arg(&s->ver)) {
                if (size != 4 || rpc_read_full(fd, in, 4, g_stop_pipe[0]) < 0)
                    return;
                dev = rpc_get_u32(in);
            } else if (size != 0) {
                return;
            }
            if (dev >= (uint32_t)s->ndev) {
                fprintf(stderr, "rpc-server: GET_DEVICE_MEMORY for unknown device %u\n", dev);
                return;
            }
            rpc_put_u64(out, 16);
            rpc_put_u64(out + 8, s->free_[dev]);
            rpc_put_u64(out + 16, s->total[dev]);
            outlen = 24;
            break;
        }
        default:
            fprintf(stderr, "Unknown command: %u\n", cmd);
            return;
        }
        if (rpc_write_full(fd, out, outlen) < 0)
            return;
    }
}

static int open_listener(const char *host, int port, int *bound)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "Invalid host address: %s (an IPv4 literal is required)\n", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Backlog 1, as the real server: one queued connection at most. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1) < 0) {
        fprintf(stderr, "Failed to create server socket on %s:%d: %s\n", host, port,
                strerror(errno));
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *bound = ntohs(sa.sin_port);
    return fd;
}

static int parse_devices(const char *list, int *ndev)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0)
            return -1;
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    if (n < 1 || n > MAX_DEVICES)
        return -1;
    *ndev = n;
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct option LONGOPTS[] = {
        {"help", no_argument, NULL, 'h'},
        {"threads", required_argument, NULL, 't'},
        {"device", required_argument, NULL, 'd'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"cache", no_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int port = 50052, cache = 0, ndev = 1, have_dev = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ht:d:H:p:c", LONGOPTS, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 't':
            if (atoi(optarg) < 1) {
                fprintf(stderr, "error: invalid number of threads '%s'\n", optarg);
                return 1;
            }
            break;
        case 'd':
            if (parse_devices(optarg, &ndev) < 0) {
                fprintf(stderr, "error: invalid device list '%s'\n", optarg);
                return 1;
            }
            have_dev = 1;
            break;
        case 'H':
            host = optarg;
            break;
        case 'p': {
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 0 || v > 65535) {
                fprintf(stderr, "error: invalid port '%s'\n", optarg);
                return 1;
            }
            port = (int)v;
            break;
        }
        case 'c':
            cache = 1;
            break;
        default:
            return unknown_argument(argv[optind - 1]);
        }
    }
    if (optind < argc)
        return unknown_argument(argv[optind]);

    struct rpcsim s = {0};
    double env_mem, frac, env_ndev;
    if (rpc_version_from_env(&s.ver) < 0 ||
        env_double("SOLLOL_SIM_RPC_MEM_MB", 16384, 1, &env_mem) < 0 ||
        env_double("SOLLOL_SIM_RPC_FREE_FRACTION", 0.9, 0, &frac) < 0 ||
        env_double("SOLLOL_SIM_RPC_DEVICES", 1, 1, &env_ndev) < 0)
        return 1;
    if (frac > 1)
        frac = 1;
    if (!have_dev)
        ndev = env_ndev > MAX_DEVICES ? MAX_DEVICES : (int)env_ndev;
    double mem_mb = env_mem;
    s.ndev = ndev;
    for (int i = 0; i < ndev; i++) {
        s.total[i] = (uint64_t)(mem_mb * 1024.0 * 1024.0);
        s.free_[i] = (uint64_t)((double)s.total[i] * frac);
    }

    if (pipe2(g_stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(host, "127.0.0.1") != 0) {
        fprintf(stderr,
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                "WARNING: Host ('%s') is != '127.0.0.1'\n"
                "         Never expose the RPC server to an open network!\n"
                "         This is an experimental feature and is not secure!\n"
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n",
                host);
    }
    int bound = 0;
    int lfd = open_listener(host, port, &bound);
    if (lfd < 0)
        return 1;
    char cache_dir[1024] = "n/a";
    if (cache) {
        const char *lc = getenv("LLAMA_CACHE"), *home = getenv("HOME");
        if (lc && *lc)
            snprintf(cache_dir, sizeof cache_dir, "%s/rpc/", lc);
        else
            snprintf(cache_dir, sizeof cache_dir, "%s/.cache/llama.cpp/rpc/", home ? home : ".");
    }
    printf("Starting RPC server v%u.%u.%u\n", s.ver.major, s.ver.minor, s.ver.patch);
    printf("  endpoint       : %s:%d\n", host, bound);
    printf("  local cache    : %s\n", cache_dir);
    printf("Devices:\n");
    for (int i = 0; i < ndev; i++)
        printf("  CPU%d: simulated device (%llu MiB, %llu MiB free)\n", i,
               (unsigned long long)(s.total[i] >> 20), (unsigned long long)(s.free_[i] >> 20));
    printf("  transport      : TCP\n");
    printf("listening on %s:%d\n", host, bound);

    for (;;) {
        struct pollfd pf[2] = {{.fd = lfd, .events = POLLIN},
                               {.fd = g_stop_pipe[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents)
            break;
        if (!pf[0].revents)
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        s.clients++;
        printf("Accepted client connection\n");
        serve_client(&s, cfd);
        close(cfd);
        printf("Client connection closed\n");
    }
    close(lfd);
    printf("rpc-server: stopped after %lu client(s)\n", s.clients);
    return 0;
}
