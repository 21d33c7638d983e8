/*
 * main.c - ollama-sim's command line, start-up and shutdown.
 *
 * ollama-sim is a simulated Ollama node for tests and benchmarks of sollol:
 * the same HTTP API, headers, status codes and streaming behaviour, with
 * deterministic output, configurable speeds, and injectable faults. When it
 * is ready it prints exactly one line, "listening on HOST:PORT", to stdout.
 * SIGINT/SIGTERM stop it cleanly (exit 0); SIGUSR1 clears the active fault.
 */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sollol/log.h"

struct sim g_sim;

static const char USAGE[] =
    "usage: ollama-sim [options]\n"
    "\n"
    "A simulated Ollama node: Ollama's HTTP API with deterministic output,\n"
    "configurable speed and injectable faults. Prints 'listening on HOST:PORT'\n"
    "to stdout when ready. Control routes: GET /_sim/stats, POST /_sim/reset,\n"
    "GET|POST /_sim/fault, GET|POST /_sim/models (see docs/simulator.md).\n"
    "\n"
    "Identity:\n"
    "  --listen HOST:PORT        address (default 127.0.0.1:11434; port 0 = ephemeral)\n"
    "  --name NAME               node name for logs and stats (default: sim)\n"
    "  --version-string V        what /api/version answers (default 0.32.15)\n"
    "  --exit-on-stdin-eof       exit when stdin closes (a parent that dies takes us along)\n"
    "  --seed N                  seed of the generated text (default 0)\n"
    "  --host-check auto|on|off  Ollama's Host header check (default auto:\n"
    "                            only when listening on loopback, as Ollama)\n"
    "  --log-level LEVEL         error|warn|info|debug (default info)\n"
    "\n"
    "Models (repeatable):\n"
    "  --model NAME[,ATTR...]    install a model; attributes: size=BYTES,\n"
    "                            family=F, params=3.2B, quant=Q4_K_M, digest=HEX64,\n"
    "                            ctx=N, dim=N (embedding size), caps=a+b, modified=UNIX,\n"
    "                            loaded (loaded at start), embed (embedding model)\n"
    "\n"
    "Speed (0 = instant where noted):\n"
    "  --tokens-per-second R     generation speed (default 100; 0 = no pacing)\n"
    "  --contention F            each extra active slot slows a stream by F (default 0;\n"
    "                            0.25: a full batch of 4 runs each stream at 1/1.75)\n"
    "  --ttft-ms MS              fixed part of time to first token (default 5)\n"
    "  --prompt-tps R            prompt evaluation tokens/s (default 5000; 0 = instant)\n"
    "  --load-ms MS              cold load time (default 200)\n"
    "  --embed-per-second R      embedding inputs/s (default 2000; 0 = instant)\n"
    "  --num-predict N           tokens generated when the request sets none (default 16)\n"
    "\n"
    "Scheduling (Ollama's environment equivalents):\n"
    "  --parallel N              slots per loaded model, OLLAMA_NUM_PARALLEL (default 4)\n"
    "  --max-queue N             waiting requests before 503, OLLAMA_MAX_QUEUE (default 512)\n"
    "  --max-loaded N            loaded models, OLLAMA_MAX_LOADED_MODELS (default 0 = no limit)\n"
    "  --keep-alive DUR          default keep-alive, OLLAMA_KEEP_ALIVE (default 5m;\n"
    "                            Go duration or seconds; negative = forever)\n"
    "\n"
    "Faults:\n"
    "  --fault MODE[:ARG]        active from the start, until changed: refuse[:MS], 500, 503,\n"
    "                            429[:RETRY_AFTER_S], hang, stall:N, close:N, 404, slow:MS\n"
    "  --fault-scope SCOPE       inference (default) or all\n"
    "\n"
    "  -h, --help                this text\n"
    "  --version                 print the sollol version\n";

enum {
    O_LISTEN = 256,
    O_NAME,
    O_VERSION_STRING,
    O_SEED,
    O_MODEL,
    O_TPS,
    O_TTFT,
    O_PROMPT_TPS,
    O_LOAD_MS,
    O_EMBED_PS,
    O_NUM_PREDICT,
    O_PARALLEL,
    O_MAX_QUEUE,
    O_MAX_LOADED,
    O_KEEP_ALIVE,
    O_FAULT,
    O_FAULT_SCOPE,
    O_HOST_CHECK,
    O_LOG_LEVEL,
    O_VERSION,
    O_EXIT_ON_STDIN_EOF,
    O_CONTENTION,
};

static const struct option LONGOPTS[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"name", required_argument, NULL, O_NAME},
    {"version-string", required_argument, NULL, O_VERSION_STRING},
    {"seed", required_argument, NULL, O_SEED},
    {"model", required_argument, NULL, O_MODEL},
    {"tokens-per-second", required_argument, NULL, O_TPS},
    {"ttft-ms", required_argument, NULL, O_TTFT},
    {"prompt-tps", required_argument, NULL, O_PROMPT_TPS},
    {"load-ms", required_argument, NULL, O_LOAD_MS},
    {"embed-per-second", required_argument, NULL, O_EMBED_PS},
    {"num-predict", required_argument, NULL, O_NUM_PREDICT},
    {"parallel", required_argument, NULL, O_PARALLEL},
    {"max-queue", required_argument, NULL, O_MAX_QUEUE},
    {"max-loaded", required_argument, NULL, O_MAX_LOADED},
    {"keep-alive", required_argument, NULL, O_KEEP_ALIVE},
    {"fault", required_argument, NULL, O_FAULT},
    {"fault-scope", required_argument, NULL, O_FAULT_SCOPE},
    {"host-check", required_argument, NULL, O_HOST_CHECK},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, O_VERSION},
    {"exit-on-stdin-eof", no_argument, NULL, O_EXIT_ON_STDIN_EOF},
    {"contention", required_argument, NULL, O_CONTENTION},
    {NULL, 0, NULL, 0},
};

static int bad_arg(const char *opt, const char *val)
{
    fprintf(stderr, "ollama-sim: invalid value for --%s: '%s'\n", opt, val);
    return 2;
}

static int num_arg(const char *s, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v < min)
        return -1;
    *out = v;
    return 0;
}

static int int_arg(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* OLLAMA_KEEP_ALIVE rules: a Go duration or whole seconds; negative = forever. */
static int keep_alive_arg(const char *s, int64_t *out)
{
    char err[128];
    int64_t ns;
    if (go_parse_duration(s, &ns, err, sizeof err) == 0) {
        *out = ns < 0 ? -1 : ns;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return -1;
    *out = v < 0 ? -1 : (int64_t)v * 1000000000LL;
    return 0;
}

/* "HOST:PORT", "[v6]:PORT", ":PORT" or "HOST". */
static int split_listen(const char *s, char *host, size_t hostlen, int *port)
{
    *port = 11434;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(end - s - 1), s + 1);
        if (end[1] == ':')
            return int_arg(end + 2, 0, 65535, port);
        return end[1] ? -1 : 0;
    }
    const char *colon = strrchr(s, ':');
    if (colon && strchr(s, ':') == colon) {
        snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
        return int_arg(colon + 1, 0, 65535, port);
    }
    snprintf(host, hostlen, "%s", s); /* a bare IPv6 literal or a host name */
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_signals(void)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&g_sim.sigint, (uv_handle_t *)&g_sim.sigterm,
                         (uv_handle_t *)&g_sim.sigusr1};
    for (size_t i = 0; i < 3; i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], on_signal_closed);
    if (g_sim.watch_stdin && !uv_is_closing((uv_handle_t *)&g_sim.stdin_pipe))
        uv_close((uv_handle_t *)&g_sim.stdin_pipe, NULL);
}

static void on_http_down(void)
{
    SOL_INFO("stopped");
}

static void shutdown_sim(const char *why);

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (signum == SIGUSR1) {
        fault_clear();
        SOL_INFO("SIGUSR1: fault cleared");
        return;
    }
    if (g_sim.shutting_down)
        return;
    char why[32];
    snprintf(why, sizeof why, "signal %d", signum);
    shutdown_sim(why);
}

static void shutdown_sim(const char *why)
{
    if (g_sim.shutting_down)
        return;
    SOL_INFO("%s: shutting down", why);
    close_signals();
    models_shutdown();
    http_shutdown(on_http_down);
}

static void on_stdin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[256];
    (void)h;
    (void)suggested;
    buf->base = scratch;
    buf->len = sizeof scratch;
}

/* The parent keeps our stdin open while it lives; EOF means it is gone. */
static void on_stdin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) {
        uv_read_stop(s);
        shutdown_sim("stdin closed");
    }
}

int main(int argc, char **argv)
{
    struct sim_config *c = &g_sim.cfg;
    memset(&g_sim, 0, sizeof g_sim);
    c->listen = "127.0.0.1:11434";
    snprintf(c->name, sizeof c->name, "sim");
    snprintf(c->version, sizeof c->version, "0.32.15");
    c->tokens_per_second = 100;
    c->ttft_ms = 5;
    c->prompt_tps = 5000;
    c->load_ms = 200;
    c->embed_per_second = 2000;
    c->num_predict = 16;
    c->parallel = 4;
    c->max_queue = 512;
    c->max_loaded = 0;
    c->keep_alive_ns = 5LL * 60 * 1000000000LL;
    c->host_check = -1;
    fault_clear();

    const char **specs = calloc((size_t)argc + 1, sizeof *specs);
    if (!specs)
        return 1;
    int nspecs = 0;
    const char *fault = NULL, *fault_scope = "inference";
    int opt;
    while ((opt = getopt_long(argc, argv, "h", LONGOPTS, NULL)) != -1) {
        switch (opt) {
        case O_LISTEN:
            c->listen = optarg;
            break;
        case O_NAME:
            snprintf(c->name, sizeof c->name, "%s", optarg);
            break;
        case O_VERSION_STRING:
            snprintf(c->version, sizeof c->version, "%s", optarg);
            break;
        case O_SEED: {
            char *end;
            errno = 0;
            c->seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno)
                return bad_arg("seed", optarg);
            break;
        }
        case O_MODEL:
            specs[nspecs++] = optarg;
            break;
        case O_TPS:
            if (num_arg(optarg, 0, &c->tokens_per_second))
                return bad_arg("tokens-per-second", optarg);
            break;
        case O_TTFT:
            if (num_arg(optarg, 0, &c->ttft_ms))
                return bad_arg("ttft-ms", optarg);
            break;
        case O_PROMPT_TPS:
            if (num_arg(optarg, 0, &c->prompt_tps))
                return bad_arg("prompt-tps", optarg);
            break;
        case O_LOAD_MS:
            if (num_arg(optarg, 0, &c->load_ms))
                return bad_arg("load-ms", optarg);
            break;
        case O_EMBED_PS:
            if (num_arg(optarg, 0, &c->embed_per_second))
                return bad_arg("embed-per-second", optarg);
            break;
        case O_NUM_PREDICT:
            if (int_arg(optarg, 1, 1000000, &c->num_predict))
                return bad_arg("num-predict", optarg);
            break;
        case O_PARALLEL:
            if (int_arg(optarg, 1, 1024, &c->parallel))
                return bad_arg("parallel", optarg);
            break;
        case O_MAX_QUEUE:
            if (int_arg(optarg, 0, 1000000, &c->max_queue))
                return bad_arg("max-queue", optarg);
            break;
        case O_MAX_LOADED:
            if (int_arg(optarg, 0, 100000, &c->max_loaded))
                return bad_arg("max-loaded", optarg);
            break;
        case O_KEEP_ALIVE:
            if (keep_alive_arg(optarg, &c->keep_alive_ns))
                return bad_arg("keep-alive", optarg);
            break;
        case O_FAULT:
            fault = optarg;
            break;
        case O_FAULT_SCOPE:
            if (strcmp(optarg, "inference") != 0 && strcmp(optarg, "all") != 0)
                return bad_arg("fault-scope", optarg);
            fault_scope = optarg;
            break;
        case O_HOST_CHECK:
            if (strcmp(optarg, "auto") == 0)
                c->host_check = -1;
            else if (strcmp(optarg, "on") == 0)
                c->host_check = 1;
            else if (strcmp(optarg, "off") == 0)
                c->host_check = 0;
            else
                return bad_arg("host-check", optarg);
            break;
        case O_LOG_LEVEL: {
            int lv = sol_log_parse_level(optarg);
            if (lv < 0)
                return bad_arg("log-level", optarg);
            sol_log_set_level((enum sol_log_level)lv);
            break;
        }
        case 'h':
            fputs(USAGE, stdout);
            free(specs);
            return 0;
        case O_CONTENTION:
            if (num_arg(optarg, 0, &c->contention))
                return bad_arg("contention", optarg);
            break;
        case O_EXIT_ON_STDIN_EOF:
            g_sim.watch_stdin = 1;
            break;
        case O_VERSION:
            printf("ollama-sim (sollol) %s\n", SOLLOL_VERSION);
            free(specs);
            return 0;
        default:
            fputs(USAGE, stderr);
            free(specs);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ollama-sim: unexpected argument '%s'\n", argv[optind]);
        free(specs);
        return 2;
    }

    static char tag[96];
    snprintf(tag, sizeof tag, "ollama-sim[%s]", c->name);
    sol_log_set_tag(tag);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (gethostname(g_sim.hostname, sizeof g_sim.hostname - 1) == 0)
        for (char *p = g_sim.hostname; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    g_sim.start_ns = now_ns();

    int rc = uv_loop_init(&g_sim.loop);
    if (rc < 0) {
        fprintf(stderr, "ollama-sim: uv_loop_init: %s\n", uv_strerror(rc));
        free(specs);
        return 1;
    }
    models_init(&g_sim.loop, infer_slot_ready);
    stats_init();
    int status = 0;
    char err[256];
    for (int i = 0; i < nspecs; i++) {
        if (!model_install_spec(specs[i], 0, err, sizeof err)) {
            fprintf(stderr, "ollama-sim: --model %s: %s\n", specs[i], err);
            status = 2;
        }
    }
    free(specs);
    if (fault && status == 0) {
        struct sim_fault f;
        memset(&f, 0, sizeof f);
        f.count = -1;
        if (fault_parse_mode(fault, &f, err, sizeof err) < 0) {
            fprintf(stderr, "ollama-sim: --fault: %s\n", err);
            status = 2;
        } else {
            f.scope_all = strcmp(fault_scope, "all") == 0 || f.mode == F_REFUSE;
            if (f.mode == F_REFUSE && f.arg > 0)
                f.until_ns = now_ns() + (uint64_t)f.arg * 1000000ULL;
            g_sim.fault = f;
        }
    }

    char host[256];
    int port = 0, bound = 0;
    int fd = -1;
    if (status == 0 && split_listen(c->listen, host, sizeof host, &port) < 0) {
        fprintf(stderr, "ollama-sim: invalid --listen '%s'\n", c->listen);
        status = 2;
    }
    if (status == 0) {
        fd = sol_listen_socket(host, port, 4096, &bound, err, sizeof err);
        if (fd < 0) {
            fprintf(stderr, "ollama-sim: %s\n", err);
            status = 1;
        }
    }
    if (status == 0 && http_start(fd) < 0) {
        fd = -1; /* closed by http_start */
        status = 1;
    }
    if (status != 0) {
        if (fd >= 0)
            close(fd);
        models_shutdown();
        uv_run(&g_sim.loop, UV_RUN_DEFAULT);
        uv_loop_close(&g_sim.loop);
        models_free();
        stats_free();
        return status;
    }

    uv_signal_init(&g_sim.loop, &g_sim.sigint);
    uv_signal_init(&g_sim.loop, &g_sim.sigterm);
    uv_signal_init(&g_sim.loop, &g_sim.sigusr1);
    uv_signal_start(&g_sim.sigint, on_signal, SIGINT);
    uv_signal_start(&g_sim.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sim.sigusr1, on_signal, SIGUSR1);
    if (g_sim.watch_stdin) {
        uv_pipe_init(&g_sim.loop, &g_sim.stdin_pipe, 0);
        if (uv_pipe_open(&g_sim.stdin_pipe, 0) == 0) {
            uv_read_start((uv_stream_t *)&g_sim.stdin_pipe, on_stdin_alloc, on_stdin_read);
        } else {
            SOL_WARN("--exit-on-stdin-eof: stdin is not a pipe; ignored");
            uv_close((uv_handle_t *)&g_sim.stdin_pipe, NULL);
            g_sim.watch_stdin = 0;
        }
    }

    int v6 = strchr(host, ':') != NULL;
    printf("listening on %s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", bound);
    fflush(stdout);
    SOL_INFO("listening on %s%s%s:%d (version %s, %d model(s), parallel %d, %.0f tokens/s)",
             v6 ? "[" : "", host, v6 ? "]" : "", bound, c->version, nspecs, c->parallel,
             c->tokens_per_second);

    uv_run(&g_sim.loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&g_sim.loop);
    if (rc != 0)
        SOL_WARN("loop closed with handles still open: %s", uv_strerror(rc));
    http_free();
    models_free();
    stats_free();
    api_free();
    return 0;
}
