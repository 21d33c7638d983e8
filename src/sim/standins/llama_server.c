/*
 * llama_server.c - the llama-server stand-in: llama.cpp's HTTP server as the
 * sharded path sees it, with deterministic text instead of a model.
 *
 * Start-up follows the real program: the command line is parsed first and
 * every --rpc backend is connected and handshaken while it is parsed (the
 * real one registers its RPC devices there), so a version mismatch or an
 * unreachable backend aborts before any port is open. Then the HTTP
 * listener comes up at once ("listening on HOST:PORT" on stdout), the GGUF
 * is checked (a bad one: "exiting due to model loading error", exit 1), and
 * every route answers 503 "Loading model" until $SOLLOL_SIM_LOAD_MS passed.
 * The backend connections stay open, idle, while it runs; when one closes
 * the process aborts (SIGABRT), as the real one does when a backend dies.
 *
 * One libuv loop: libmicrohttpd in external epoll mode through the mhd_uv
 * glue, a uv timer per generating request for token pacing, suspended
 * connections for requests that wait for a slot (-np) or for tokens.
 */
#include "llama_sim.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------- RPC backends */

/* Connects to host:port (blocking, as the real client does). */
static int tcp_connect(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int rpc_call(struct backend *b, uint8_t cmd, const void *in, size_t inlen, void *out,
                    size_t outlen)
{
    uint8_t hdr[9];
    hdr[0] = cmd;
    rpc_put_u64(hdr + 1, inlen);
    if (rpc_write_full(b->fd, hdr, 9) < 0 || (inlen && rpc_write_full(b->fd, in, inlen) < 0))
        return -1;
    uint8_t sz[8];
    if (rpc_read_full(b->fd, sz, 8, -1) < 0 || rpc_get_u64(sz) != outlen)
        return -1;
    return rpc_read_full(b->fd, out, outlen, -1);
}

/* Connects, handshakes and queries the devices of one backend; any failure
 * aborts the process as the real client does. */
static void backend_open(struct backend *b)
{
    b->fd = tcp_connect(b->host, b->port);
    if (b->fd < 0) {
        logf_("ggml-rpc.cpp: Failed to connect to %s", b->endpoint);
        standin_abort();
    }
    uint8_t caps[RPC_CONN_CAPS_SIZE] = {0}, reply[4 + RPC_CONN_CAPS_SIZE];
    if (rpc_call(b, RPC_CMD_HELLO, caps, rpc_hello_request_size(&g_ls.ver), reply,
                 rpc_hello_reply_size(&g_ls.ver)) < 0) {
        /* Closed without a reply: the server wants the other HELLO form. */
        logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response (HELLO to "
              "%s)",
              b->endpoint);
        standin_abort();
    }
    b->ver.major = reply[0];
    b->ver.minor = reply[1];
    b->ver.patch = reply[2];
    if (!rpc_version_compatible(&g_ls.ver, &b->ver)) {
        logf_("RPC server version mismatch: %u.%u.%u", b->ver.major, b->ver.minor, b->ver.patch);
        logf_("ggml-rpc.cpp: RPC handshake failed for %s (client protocol %u.%u.%u)", b->endpoint,
              g_ls.ver.major, g_ls.ver.minor, g_ls.ver.patch);
        standin_abort();
    }
    b->ndev = 1;
    if (rpc_has_device_count(&g_ls.ver)) {
        uint8_t cnt[4];
        if (rpc_call(b, RPC_CMD_DEVICE_COUNT, NULL, 0, cnt, 4) < 0) {
            logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response "
                  "(DEVICE_COUNT to %s)",
                  b->endpoint);
            standin_abort();
        }
        uint32_t n = rpc_get_u32(cnt);
        b->ndev = n > MAX_DEVICES ? MAX_DEVICES : (int)n;
    }
    for (int d = 0; d < b->ndev; d++) {
        uint8_t arg[4], mem[16];
        rpc_put_u32(arg, (uint32_t)d);
        if (rpc_call(b, RPC_CMD_GET_DEVICE_MEMORY, arg, rpc_has_device_arg(&g_ls.ver) ? 4 : 0, mem,
                     16) < 0) {
            logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response "
                  "(GET_DEVICE_MEMORY to %s)",
                  b->endpoint);
            standin_abort();
        }
        b->free_[d] = rpc_get_u64(mem);
        b->total[d] = rpc_get_u64(mem + 8);
        logf_("load_backend: RPC[%s] device %d: %llu MiB free of %llu MiB (protocol %u.%u.%u)",
              b->endpoint, d, (unsigned long long)(b->free_[d] >> 20),
              (unsigned long long)(b->total[d] >> 20), b->ver.major, b->ver.minor, b->ver.patch);
    }
}

static void on_backend_event(uv_poll_t *p, int status, int events)
{
    struct backend *b = p->data;
    (void)events;
    char c;
    ssize_t n = status < 0 ? -1 : recv(b->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (g_ls.stopping)
        return;
    /* An idle RPC connection only ever becomes readable when it closes. */
    logf_("RPC connection to %s lost (%s)", b->endpoint, n == 0 ? "closed by the server" : "error");
    logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response");
    standin_abort();
}

static int parse_rpc_list(const char *list)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (g_ls.nbe >= MAX_BACKENDS || len == 0 || len >= sizeof g_ls.be[0].endpoint)
            return -1;
        struct backend *b = &g_ls.be[g_ls.nbe];
        snprintf(b->endpoint, sizeof b->endpoint, "%.*s", (int)len, p);
        char *colon = strrchr(b->endpoint, ':');
        if (!colon || colon == b->endpoint)
            return -1;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535)
            return -1;
        size_t hl = (size_t)(colon - b->endpoint);
        if (hl >= sizeof b->host)
            return -1;
        memcpy(b->host, b->endpoint, hl);
        b->host[hl] = 0;
        b->port = (int)port;
        b->fd = -1;
        g_ls.nbe++;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- start-up */

static int parse_split(const char *s)
{
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0 || g_ls.nts >= MAX_SPLIT)
            return -1;
        g_ls.ts[g_ls.nts++] = v;
        if (*end == 0)
            break;
        if (*end != ',' && *end != '/')
            return -1;
        p = end + 1;
    }
    return g_ls.nts > 0 ? 0 : -1;
}

static int int_value(const char *s, int min, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < min || v > 1 << 30)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(void)
{
    printf("usage: llama-server [options]\n\n"
           "Stand-in of llama.cpp's llama-server for sollol's tests. Accepts the real flags\n"
           "(-m, --host, --port, -ngl, --rpc, -c, -np, --metrics, -a, --api-key, -ts, -sm,\n"
           "--embeddings, --no-webui, -to, --mmproj, --lora and common tuning flags);\n"
           "simulation knobs come from SOLLOL_SIM_* environment variables\n"
           "(docs/simulator.md).\n");
}

/* Flags the stand-in accepts and ignores (tuning of the real server), as
 * " word " lists for in_words(). */
static const char IGNORED_VALUE[] =
    " -t --threads -tb --threads-batch -b --batch-size -ub --ubatch-size --temp "
    "--seed -s -ctk --cache-type-k -ctv --cache-type-v --threads-http "
    "--chat-template --reasoning-format -dev --device -mg --main-gpu --cache-reuse "
    "--keep --numa --log-file -ot --override-tensor --path --api-key-file "
    "--reasoning-budget -n --n-predict --slot-save-path --log-verbosity -lv --top-k "
    "--top-p --min-p --repeat-penalty ";
static const char IGNORED_FLAG[] =
    " --jinja --no-mmap --mlock -cb --cont-batching --log-disable -v --verbose "
    "--slots --no-slots --props --no-warmup --no-kv-offload -nkvo --log-colors "
    "--no-context-shift --context-shift -kvu --kv-unified --swa-full --offline "
    "--check-tensors ";

/* 1 when `a` is one of the space-separated words of `list` (which starts
 * and ends with a space). */
static int in_words(const char *list, const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || strchr(a, ' '))
        return 0;
    for (const char *p = strstr(list, a); p; p = strstr(p + 1, a))
        if (p[-1] == ' ' && p[n] == ' ')
            return 1;
    return 0;
}

static int is(const char *a, const char *s, const char *l)
{
    return (s && strcmp(a, s) == 0) || (l && strcmp(a, l) == 0);
}

static int parse_args(int argc, char **argv)
{
    g_ls.host = "127.0.0.1";
    g_ls.port = 8080;
    g_ls.ctx = 4096;
    g_ls.np = 1;
    g_ls.timeout = 600;
    static const char VALUED[] =
        " -m --model --host --port -ngl --n-gpu-layers --gpu-layers --rpc -c --ctx-size "
        "-np --parallel -a --alias --api-key -ts --tensor-split -sm --split-mode -to "
        "--timeout --mmproj -mm --lora ";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (is(a, "-h", "--help")) {
            usage();
            exit(0);
        } else if (is(a, "--version", NULL)) {
            printf("version: 0 (sollol-sim)\nbuilt with cc for sollol tests\n");
            exit(0);
        } else if (is(a, "--metrics", NULL)) {
            g_ls.metrics = 1;
            continue;
        } else if (is(a, "--embeddings", "--embedding") || is(a, "--embd", NULL)) {
            g_ls.embeddings = 1;
            continue;
        } else if (is(a, "--no-webui", NULL)) {
            g_ls.no_webui = 1;
            continue;
        } else if (is(a, "-fa", "--flash-attn")) {
            /* on|off|auto in new builds, a bare flag in old ones */
            if (v && (!strcmp(v, "on") || !strcmp(v, "off") || !strcmp(v, "auto")))
                i++;
            continue;
        } else if (in_words(IGNORED_FLAG, a)) {
            continue;
        } else if (!in_words(VALUED, a) && !in_words(IGNORED_VALUE, a)) {
            fprintf(stderr, "error: invalid argument: %s\n", a);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "error: expected value for argument: %s\n", a);
            return -1;
        }
        int bad = 0;
        if (is(a, "-m", "--model")) {
            g_ls.model = v;
        } else if (is(a, "--host", NULL)) {
            g_ls.host = v;
        } else if (is(a, "--port", NULL)) {
            bad = int_value(v, 0, &g_ls.port) < 0 || g_ls.port > 65535;
        } else if (is(a, "-ngl", "--n-gpu-layers") || is(a, "--gpu-layers", NULL)) {
            int n;
            bad = strcmp(v, "auto") && strcmp(v, "all") && int_value(v, -1, &n) < 0;
            g_ls.ngl = v;
        } else if (is(a, "--rpc", NULL)) {
            bad = parse_rpc_list(v) < 0;
        } else if (is(a, "-c", "--ctx-size")) {
            bad = int_value(v, 0, &g_ls.ctx) < 0;
        } else if (is(a, "-np", "--parallel")) {
            bad = int_value(v, 1, &g_ls.np) < 0 || g_ls.np > 256;
        } else if (is(a, "-a", "--alias")) {
            g_ls.alias = v;
        } else if (is(a, "--api-key", NULL)) {
            g_ls.api_key = v;
        } else if (is(a, "-ts", "--tensor-split")) {
            g_ls.nts = 0;
            bad = parse_split(v) < 0;
        } else if (is(a, "-sm", "--split-mode")) {
            bad = strcmp(v, "none") && strcmp(v, "layer") && strcmp(v, "row");
            g_ls.split_mode = v;
        } else if (is(a, "-to", "--timeout")) {
            bad = int_value(v, 0, &g_ls.timeout) < 0;
        } else if (is(a, "--mmproj", "-mm")) {
            g_ls.mmproj = v;
        } else if (is(a, "--lora", NULL)) {
            g_ls.lora = v;
        } /* else: an IGNORED_VALUE flag, no effect on the simulation */
        if (bad) {
            fprintf(stderr, "error: invalid value for argument %s: '%s'\n", a, v);
            return -1;
        }
        i++;
    }
    if (g_ls.ctx == 0)
        g_ls.ctx = 4096; /* 0 = the model's training context */
    if (g_ls.ctx / g_ls.np < 8) {
        fprintf(stderr, "error: context size %d too small for %d slots\n", g_ls.ctx, g_ls.np);
        return -1;
    }
    return 0;
}

/* Checks the -m file as the loader would: exists, starts with the GGUF
 * magic and a known version. Returns 0, or -1 after logging why. */
static int check_model(void)
{
    if (!g_ls.model) {
        logf_("llama_model_load: error loading model: no model file given (-m)");
        return -1;
    }
    const char *fail = getenv("SOLLOL_SIM_LOAD_FAIL");
    if (fail && strcmp(fail, "1") == 0) {
        logf_("llama_model_load: error loading model: simulated failure (SOLLOL_SIM_LOAD_FAIL)");
        return -1;
    }
    int fd = open(g_ls.model, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        logf_("gguf_init_from_file: failed to open GGUF file '%s' (%s)", g_ls.model,
              strerror(errno));
        return -1;
    }
    unsigned char h[8];
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    if (n < 8 || memcmp(h, "GGUF", 4) != 0) {
        logf_("gguf_init_from_file_impl: invalid magic characters: '%.4s', expected 'GGUF'",
              n >= 4 ? (const char *)h : "");
        return -1;
    }
    uint32_t ver = rpc_get_u32(h + 4);
    if (ver < 2 || ver > 3) {
        logf_("gguf_init_from_file_impl: unsupported GGUF version: %u", ver);
        return -1;
    }
    return 0;
}

static void on_load_done(uv_timer_t *t)
{
    (void)t;
    g_ls.ready = 1;
    logf_("main: model loaded");
    logf_("main: server is listening on http://%s:%d - starting the main loop", g_ls.host,
          g_ls.port);
    logf_("srv  update_slots: all slots are idle");
}

static void on_crash(uv_timer_t *t)
{
    (void)t;
    logf_("simulated crash (SOLLOL_SIM_CRASH_AFTER_MS)");
    standin_abort();
}

static void shutdown_all(void)
{
    if (g_ls.stopping)
        return;
    g_ls.stopping = 1;
    /* Leave the queue first so that freed slots start nobody. */
    while (g_ls.q_head)
        slot_release(g_ls.q_head);
    uv_close((uv_handle_t *)&g_ls.load_timer, NULL);
    uv_close((uv_handle_t *)&g_ls.crash_timer, NULL);
    uv_close((uv_handle_t *)&g_ls.sigterm, NULL);
    uv_close((uv_handle_t *)&g_ls.sigint, NULL);
    for (int i = 0; i < g_ls.nbe; i++)
        if (g_ls.be[i].poll_init)
            uv_close((uv_handle_t *)&g_ls.be[i].poll, NULL);
    http_shutdown();
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    logf_("srv    operator(): received signal %d, shutting down", signum);
    shutdown_all();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    g_ls.argc = argc;
    g_ls.argv = argv;
    if (rpc_version_from_env(&g_ls.ver) < 0 ||
        env_double("SOLLOL_SIM_TOKENS_PER_SECOND", 100, 0, &g_ls.tps) < 0 ||
        env_double("SOLLOL_SIM_PROMPT_TPS", 5000, 0, &g_ls.prompt_tps) < 0 ||
        env_double("SOLLOL_SIM_LOAD_MS", 200, 0, &g_ls.load_ms) < 0 ||
        env_double("SOLLOL_SIM_CRASH_AFTER_MS", 0, 0, &g_ls.crash_ms) < 0 ||
        env_double("SOLLOL_SIM_DEFAULT_TOKENS", 16, 0, &g_ls.default_tokens) < 0 ||
        env_double("SOLLOL_SIM_FAIL_AFTER_TOKENS", 0, 0, &g_ls.fail_after) < 0)
        return 1;
    if (parse_args(argc, argv) < 0)
        return 1;
    logf_("build: 0 (sollol-sim) with cc for sollol tests; RPC protocol %u.%u.%u", g_ls.ver.major,
          g_ls.ver.minor, g_ls.ver.patch);
    /* The real program registers its RPC devices while parsing --rpc. */
    for (int i = 0; i < g_ls.nbe; i++)
        backend_open(&g_ls.be[i]);

    char err[256];
    int bound = 0;
    int lfd = sol_listen_socket(g_ls.host, g_ls.port, 512, &bound, err, sizeof err);
    if (lfd < 0) {
        logf_("srv    start: couldn't bind HTTP server socket, hostname: %s, port: %d (%s)",
              g_ls.host, g_ls.port, err);
        return 1;
    }
    g_ls.port = bound;
    g_ls.slots = calloc((size_t)g_ls.np, sizeof *g_ls.slots);
    if (!g_ls.slots)
        return 1;
    uv_loop_init(&g_ls.loop);
    if (http_start(lfd) < 0)
        return 1;
    uv_timer_init(&g_ls.loop, &g_ls.load_timer);
    uv_timer_init(&g_ls.loop, &g_ls.crash_timer);
    uv_signal_init(&g_ls.loop, &g_ls.sigterm);
    uv_signal_init(&g_ls.loop, &g_ls.sigint);
    uv_signal_start(&g_ls.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_ls.sigint, on_signal, SIGINT);
    logf_("main: HTTP server is listening, hostname: %s, port: %d, http threads: 1", g_ls.host,
          g_ls.port);
    printf("listening on %s:%d\n", g_ls.host, g_ls.port);
    logf_("main: loading model");
    if (check_model() < 0) {
        logf_("srv    load_model: failed to load model, '%s'", g_ls.model ? g_ls.model : "");
        logf_("main: exiting due to model loading error");
        return 1;
    }
    for (int i = 0; i < g_ls.nbe; i++) {
        struct backend *b = &g_ls.be[i];
        if (uv_poll_init_socket(&g_ls.loop, &b->poll, b->fd) == 0) {
            b->poll.data = b;
            b->poll_init = 1;
            uv_poll_start(&b->poll, UV_READABLE | UV_DISCONNECT, on_backend_event);
        }
    }
    uv_timer_start(&g_ls.load_timer, on_load_done, (uint64_t)g_ls.load_ms, 0);
    if (g_ls.crash_ms > 0)
        uv_timer_start(&g_ls.crash_timer, on_crash, (uint64_t)g_ls.crash_ms, 0);
    uv_run(&g_ls.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < g_ls.nbe; i++)
        close(g_ls.be[i].fd);
    for (int i = 0; i < g_ls.np; i++)
        sb_free(&g_ls.slots[i].cache);
    free(g_ls.slots);
    for (int i = 0; i < RECENT_MAX; i++)
        free(g_ls.recent[i].body);
    uv_loop_close(&g_ls.loop);
    logf_("main: server stopped");
    return 0;
}
