/*
 * config.c - table-driven configuration (see config.h).
 *
 * Every value, whatever its source, goes through the same parsers: the
 * built-in defaults are text parsed like user input, so a default that does
 * not parse or is out of bounds fails the unit test instead of shipping.
 */
#include "base/config.h"
#include "base/discovery_targets.h"
#include "base/auth.h"
#include "base/rpc_codec.h"
#include "sollol/log.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SOLLOL_VERSION
#define SOLLOL_VERSION "unknown"
#endif

#define MAX_FILE_BYTES (4u << 20) /* a config file larger than this is a mistake */
#define MAX_NODE_NAME  64
#define MAX_KEY        256 /* longest dotted key we report */

/* ------------------------------------------------------------------ */
/* The tables                                                          */
/* ------------------------------------------------------------------ */

static int derive_listen(void *obj, char *why, size_t whylen);
static int derive_node_url(void *obj, char *why, size_t whylen);
static int check_node_name(void *obj, char *why, size_t whylen);
static int check_discovery_cidrs(void *obj, char *why, size_t whylen);
static int check_auth_keys(void *obj, char *why, size_t whylen);
static int check_auth_keys_file(void *obj, char *why, size_t whylen);
static int check_auth_failures(void *obj, char *why, size_t whylen);
static int check_auth_public(void *obj, char *why, size_t whylen);
static int check_cors_origins(void *obj, char *why, size_t whylen);
static int check_rpc_backends(void *obj, char *why, size_t whylen);

/* Order matches enum sol_log_level, whose values are stored directly. */
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
_Static_assert(SOL_LOG_ERROR == 0 && SOL_LOG_WARN == 1 && SOL_LOG_INFO == 2 && SOL_LOG_DEBUG == 3,
               "log_levels[] must match enum sol_log_level");
static const char *const log_formats[] = {"text", "json", NULL}; /* index = log_format_json */
/* Order matches enum sol_routing_mode. */
static const char *const routing_modes[] = {"cost", "round_robin", "least_conn", NULL};

#define CFG(field)  offsetof(struct sol_config, field)
#define NODE(field) offsetof(struct sol_node_conf, field)

const struct sol_config_key sol_config_keys[] = {
    {.flag = "config",
     .env = "SOLLOL_CONFIG",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .offset = CFG(config_path),
     .flags = SOL_CK_META,
     .doc = "JSON configuration file to read (there is no default file)"},
    {.key = "listen",
     .env = "SOLLOL_LISTEN",
     .env_fallback = "OLLAMA_HOST",
     .flag = "listen",
     .metavar = "HOST:PORT",
     .type = SOL_CONF_STRING,
     .def = "127.0.0.1:11434",
     .offset = CFG(listen),
     .after_set = derive_listen,
     .doc = "Address clients connect to (OLLAMA_HOST syntax; port 0 = any free port)"},
    {.key = "nodes",
     .env = "SOLLOL_NODES",
     .flag = "node",
     .metavar = "[NAME=]URL",
     .type = SOL_CONF_NODES,
     .offset = CFG(nodes),
     .flags = SOL_CK_REPEAT,
     .doc = "Ollama node to route to; the variable takes a comma-separated list"},
    {.key = "max_body_bytes",
     .env = "SOLLOL_MAX_BODY",
     .flag = "max-body",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "64MiB",
     .min = 1024,
     .max = 1099511627776.0, /* 1 TiB */
     .offset = CFG(max_body_bytes),
     .doc = "Largest request body accepted from a client"},
    {.key = "timeouts.connect_ms",
     .env = "SOLLOL_CONNECT_TIMEOUT",
     .flag = "connect-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "3s",
     .min = 1,
     .max = 600000, /* 10m */
     .offset = CFG(connect_timeout_ms),
     .doc = "Time allowed to connect to a node"},
    {.key = "timeouts.first_byte_ms",
     .env = "SOLLOL_FIRST_BYTE_TIMEOUT",
     .flag = "first-byte-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5m",
     .min = 1,
     .max = 86400000, /* 24h */
     .offset = CFG(first_byte_timeout_ms),
     .doc = "Time allowed for a node's first response byte (covers cold model loads)"},
    {.key = "timeouts.idle_ms",
     .env = "SOLLOL_IDLE_TIMEOUT",
     .flag = "idle-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "2m",
     .min = 1,
     .max = 86400000, /* 24h */
     .offset = CFG(idle_timeout_ms),
     .doc = "Longest silence allowed between two chunks of a node's response"},
    {.key = "routing.mode",
     .env = "SOLLOL_ROUTING",
     .flag = "routing",
     .type = SOL_CONF_ENUM,
     .choices = routing_modes,
     .def = "cost",
     .offset = CFG(routing_mode),
     .doc = "How a node is chosen: cost (expected completion time), round_robin, least_conn"},
    {.key = "routing.wait_for_faster",
     .env = "SOLLOL_WAIT_FOR_FASTER",
     .flag = "wait-for-faster",
     .type = SOL_CONF_BOOL,
     .def = "true",
     .offset = CFG(wait_for_faster),
     .doc = "Cost mode: a queued request may wait for a busy faster node rather than take a "
            "free slot elsewhere"},
    {.key = "routing.max_attempts",
     .env = "SOLLOL_MAX_ATTEMPTS",
     .flag = "max-attempts",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "3",
     .min = 1,
     .max = 8,
     .offset = CFG(max_attempts),
     .doc = "Nodes tried for one request before its first byte reaches the client"},
    {.key = "routing.retry_deadline_ms",
     .env = "SOLLOL_RETRY_DEADLINE",
     .flag = "retry-deadline",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "10m",
     .min = 1,
     .max = 86400000,
     .offset = CFG(retry_deadline_ms),
     .doc = "No new attempt starts this long after the request arrived"},
    {.key = "routing.continue_streams",
     .env = "SOLLOL_CONTINUE_STREAMS",
     .flag = "continue-streams",
     .type = SOL_CONF_BOOL,
     .def = "true",
     .offset = CFG(continue_streams),
     .doc = "A chat answer whose node fails after its first byte is continued on another node "
            "(the text so far as a trailing assistant message), within routing.max_attempts and "
            "routing.retry_deadline_ms"},
    {.key = "routing.continue_max_bytes",
     .env = "SOLLOL_CONTINUE_MAX",
     .flag = "continue-max",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "256KiB",
     .min = 1024,
     .max = 67108864.0, /* 64 MiB */
     .offset = CFG(continue_max_bytes),
     .doc = "Answer text kept per stream to continue it; a longer answer is not continued "
            "(and a non-streamed chat answer longer than it fails)"},
    {.key = "queue.max_length",
     .env = "SOLLOL_QUEUE_MAX",
     .flag = "queue-max",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "1024",
     .min = 0,
     .max = 1048576,
     .offset = CFG(queue_max_length),
     .doc = "Requests that may wait for a free node slot; beyond it: 503 queue full"},
    {.key = "queue.max_wait_ms",
     .env = "SOLLOL_QUEUE_WAIT",
     .flag = "queue-wait",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "300s",
     .min = 1,
     .max = 86400000,
     .offset = CFG(queue_max_wait_ms),
     .doc = "Longest wait for a node slot before 503 timed out waiting for a node"},
    {.key = "queue.aging_ms",
     .env = "SOLLOL_QUEUE_AGING",
     .flag = "queue-aging",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "10s",
     .min = 0,
     .max = 86400000,
     .offset = CFG(queue_aging_ms),
     .doc = "Waiting this long raises a request's priority by one level (0 = strict priority)"},
    {.key = "affinity.capacity",
     .env = "SOLLOL_AFFINITY_CAPACITY",
     .flag = "affinity-capacity",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "65536",
     .min = 0,
     .max = 16777216,
     .offset = CFG(affinity_capacity),
     .doc = "Conversations whose node is remembered (0 = no prefix affinity)"},
    /* Distributed embedding batches (embed.c). */
    {.key = "embed.split_min_inputs",
     .env = "SOLLOL_EMBED_SPLIT_MIN",
     .flag = "embed-split-min",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "64",
     .min = 0,
     .max = 1000000,
     .offset = CFG(embed_split_min_inputs),
     .doc = "/api/embed inputs from which a batch is split across nodes (0 = never split)"},
    {.key = "health.probe_interval_ms",
     .env = "SOLLOL_PROBE_INTERVAL",
     .flag = "probe-interval",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5s",
     .min = 50,
     .max = 3600000,
     .offset = CFG(probe_interval_ms),
     .doc = "Time between liveness probes of a node (GET /api/version and /api/ps)"},
    {.key = "health.tags_interval_ms",
     .env = "SOLLOL_TAGS_INTERVAL",
     .flag = "tags-interval",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "30s",
     .min = 50,
     .max = 86400000,
     .offset = CFG(tags_interval_ms),
     .doc = "Time between reads of a node's installed models (GET /api/tags)"},
    {.key = "health.probe_timeout_ms",
     .env = "SOLLOL_PROBE_TIMEOUT",
     .flag = "probe-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "2s",
     .min = 10,
     .max = 600000,
     .offset = CFG(probe_timeout_ms),
     .doc = "Time allowed for one probe"},
    {.key = "health.max_models_per_node",
     .env = "SOLLOL_MAX_MODELS_PER_NODE",
     .flag = "max-models-per-node",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "4096",
     .min = 1,
     .max = 1000000,
     .offset = CFG(max_models_per_node),
     .doc = "Models kept per node: names a node lists beyond it are ignored, with a warning"},
    {.key = "breaker.failure_threshold",
     .env = "SOLLOL_BREAKER_FAILURES",
     .flag = "breaker-failures",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "3",
     .min = 1,
     .max = 1000,
     .offset = CFG(breaker_failure_threshold),
     .doc = "Consecutive failures that open a node's circuit breaker"},
    {.key = "breaker.error_rate",
     .env = "SOLLOL_BREAKER_ERROR_RATE",
     .flag = "breaker-error-rate",
     .metavar = "RATE",
     .type = SOL_CONF_DOUBLE,
     .def = "0.5",
     .min = 0.01,
     .max = 1,
     .offset = CFG(breaker_error_rate),
     .doc = "Failure share over the window that opens the breaker"},
    {.key = "breaker.min_requests",
     .env = "SOLLOL_BREAKER_MIN_REQUESTS",
     .flag = "breaker-min-requests",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "10",
     .min = 1,
     .max = 1000000,
     .offset = CFG(breaker_min_requests),
     .doc = "Requests the window must hold before the error rate counts"},
    {.key = "breaker.window_ms",
     .env = "SOLLOL_BREAKER_WINDOW",
     .flag = "breaker-window",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "30s",
     .min = 80,
     .max = 3600000,
     .offset = CFG(breaker_window_ms),
     .doc = "Length of the sliding error-rate window"},
    {.key = "breaker.cooldown_min_ms",
     .env = "SOLLOL_BREAKER_COOLDOWN_MIN",
     .flag = "breaker-cooldown-min",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "1s",
     .min = 1,
     .max = 3600000,
     .offset = CFG(breaker_cooldown_min_ms),
     .doc = "First cooldown of an open breaker; doubles on each re-open"},
    {.key = "breaker.cooldown_max_ms",
     .env = "SOLLOL_BREAKER_COOLDOWN_MAX",
     .flag = "breaker-cooldown-max",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "60s",
     .min = 1,
     .max = 86400000,
     .offset = CFG(breaker_cooldown_max_ms),
     .doc = "Longest cooldown of an open breaker"},
    {.key = "scoring.default_gen_tps",
     .env = "SOLLOL_DEFAULT_GEN_TPS",
     .flag = "default-gen-tps",
     .metavar = "TPS",
     .type = SOL_CONF_DOUBLE,
     .def = "30",
     .min = 0.01,
     .max = 1000000,
     .offset = CFG(default_gen_tps),
     .doc = "Generation tokens/s assumed for a node and model not yet measured"},
    {.key = "scoring.default_prompt_tps",
     .env = "SOLLOL_DEFAULT_PROMPT_TPS",
     .flag = "default-prompt-tps",
     .metavar = "TPS",
     .type = SOL_CONF_DOUBLE,
     .def = "500",
     .min = 0.01,
     .max = 10000000,
     .offset = CFG(default_prompt_tps),
     .doc = "Prompt tokens/s assumed for a node and model not yet measured"},
    {.key = "scoring.default_load_ms",
     .env = "SOLLOL_DEFAULT_LOAD",
     .flag = "default-load",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5s",
     .min = 1,
     .max = 3600000,
     .offset = CFG(default_load_ms),
     .doc = "Cold model load time assumed for a node and model not yet measured"},
    {.key = "scoring.typical_predict",
     .env = "SOLLOL_TYPICAL_PREDICT",
     .flag = "typical-predict",
     .metavar = "TOKENS",
     .type = SOL_CONF_INT,
     .def = "256",
     .min = 1,
     .max = 1000000,
     .offset = CFG(typical_predict),
     .doc = "Tokens a request generates when it sets no num_predict"},
    {.key = "scoring.affinity_prompt_fraction",
     .env = "SOLLOL_AFFINITY_FRACTION",
     .flag = "affinity-fraction",
     .metavar = "F",
     .type = SOL_CONF_DOUBLE,
     .def = "0.1",
     .min = 0,
     .max = 1,
     .offset = CFG(affinity_prompt_fraction),
     .doc = "Share of the prompt time the node holding a conversation's prefix pays"},
    {.key = "shutdown.grace_ms",
     .env = "SOLLOL_SHUTDOWN_GRACE",
     .flag = "shutdown-grace",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "30s",
     .min = 0,
     .max = 86400000, /* 24h */
     .offset = CFG(shutdown_grace_ms),
     .doc = "On SIGTERM/SIGINT, time in-flight requests get to finish before they are cut"},
    {.key = "discovery.cidrs",
     .env = "SOLLOL_DISCOVERY_CIDRS",
     .flag = "discover",
     .metavar = "CIDR[:PORT],...",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(discovery_cidrs),
     .flags = SOL_CK_LIST,
     .after_set = check_discovery_cidrs,
     .doc = "IPv4 ranges scanned for Ollama nodes (list or comma-separated; empty = off)"},
    {.key = "discovery.port",
     .env = "SOLLOL_DISCOVERY_PORT",
     .flag = "discovery-port",
     .metavar = "PORT",
     .type = SOL_CONF_INT,
     .def = "11434",
     .min = 1,
     .max = 65535,
     .offset = CFG(discovery_port),
     .doc = "Port scanned in ranges that name none"},
    {.key = "discovery.interval_ms",
     .env = "SOLLOL_DISCOVERY_INTERVAL",
     .flag = "discovery-interval",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "60s",
     .min = 200,
     .max = 86400000, /* 24h */
     .offset = CFG(discovery_interval_ms),
     .doc = "Time between two discovery scans"},
    {.key = "discovery.timeout_ms",
     .env = "SOLLOL_DISCOVERY_TIMEOUT",
     .flag = "discovery-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "1s",
     .min = 10,
     .max = 60000,
     .offset = CFG(discovery_timeout_ms),
     .doc = "Connect-and-answer time allowed to one scanned address"},
    {.key = "discovery.concurrency",
     .env = "SOLLOL_DISCOVERY_CONCURRENCY",
     .flag = "discovery-concurrency",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "32",
     .min = 1,
     .max = 1024,
     .offset = CFG(discovery_concurrency),
     .doc = "Scanned addresses in flight at most"},
    {.key = "discovery.max_missed",
     .env = "SOLLOL_DISCOVERY_MAX_MISSED",
     .flag = "discovery-max-missed",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "3",
     .min = 1,
     .max = 1000,
     .offset = CFG(discovery_max_missed),
     .doc = "Scans in a row a discovered node may miss before it leaves the table"},
    {.key = "auth.keys",
     .env = "SOLLOL_AUTH_KEYS",
     .flag = "auth-keys",
     .metavar = "JSON",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(auth_keys),
     .after_set = check_auth_keys,
     .doc = "API keys as a JSON array of {name, sha256, models, rate, admin} (none = open)"},
    {.key = "auth.keys_file",
     .env = "SOLLOL_AUTH_KEYS_FILE",
     .flag = "auth-keys-file",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(auth_keys_file),
     .after_set = check_auth_keys_file,
     .doc = "JSON file of API keys, plain keys allowed; must be mode 0600/0400, owned by sollold"},
    {.key = "auth.public",
     .env = "SOLLOL_AUTH_PUBLIC",
     .flag = "auth-public",
     .metavar = "JSON",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(auth_public),
     .after_set = check_auth_public,
     .doc = "Paths open without a key when keys exist, e.g. [\"/metrics\", \"/api/version\"]"},
    {.key = "cors.origins",
     .env = "OLLAMA_ORIGINS",
     .flag = "origins",
     .metavar = "ORIGIN,...",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(cors_origins),
     .flags = SOL_CK_LIST,
     .after_set = check_cors_origins,
     .doc = "Browser origins allowed besides Ollama's defaults (localhost, app://, ...), as "
            "OLLAMA_ORIGINS; '*' = any"},
    {.key = "limits.max_url_bytes",
     .env = "SOLLOL_MAX_URL",
     .flag = "max-url",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "4KiB",
     .min = 256,
     .max = 65536,
     .offset = CFG(max_url_bytes),
     .doc = "Longest request target (path and query) accepted: 414 beyond"},
    {.key = "limits.max_header_bytes",
     .env = "SOLLOL_MAX_HEADER",
     .flag = "max-header",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "8KiB",
     .min = 1024,
     .max = 1048576,
     .offset = CFG(max_header_bytes),
     .doc = "Largest total size of a request's header fields: 431 beyond"},
    {.key = "limits.max_connections",
     .env = "SOLLOL_MAX_CONNECTIONS",
     .flag = "max-connections",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "16384",
     .min = 1,
     .max = 1000000,
     .offset = CFG(max_connections),
     .doc = "Client connections open at once; more are closed when accepted"},
    {.key = "limits.max_connections_per_client",
     .env = "SOLLOL_MAX_CONNECTIONS_PER_CLIENT",
     .flag = "max-connections-per-client",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "256",
     .min = 0,
     .max = 1000000,
     .offset = CFG(max_connections_per_client),
     .doc = "Connections one client address may hold open (0 = no limit): 429 beyond"},
    {.key = "limits.header_timeout_ms",
     .env = "SOLLOL_HEADER_TIMEOUT",
     .flag = "header-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .offset = CFG(header_timeout_ms),
     .doc = "Time a client has to send a request's headers (cuts off slowloris clients)"},
    {.key = "limits.client_idle_timeout_ms",
     .env = "SOLLOL_CLIENT_IDLE_TIMEOUT",
     .flag = "client-idle-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5m",
     .min = 1000,
     .max = 86400000,
     .offset = CFG(client_idle_timeout_ms),
     .doc = "A client connection silent this long is closed (not while waiting for a node)"},
    {.key = "limits.max_upstream_transfers",
     .env = "SOLLOL_MAX_UPSTREAM",
     .flag = "max-upstream",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "1024",
     .min = 1,
     .max = 1000000,
     .offset = CFG(max_upstream_transfers),
     .doc = "Proxied requests in flight to all nodes together; more wait in the queue"},
    {.key = "limits.json_max_depth",
     .env = "SOLLOL_JSON_MAX_DEPTH",
     .flag = "json-max-depth",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "128",
     .min = 2,
     .max = 4096,
     .offset = CFG(json_max_depth),
     .doc = "Deepest nesting of arrays and objects accepted in a request body: 400 beyond"},
    {.key = "limits.max_body_total_bytes",
     .env = "SOLLOL_MAX_BODY_TOTAL",
     .flag = "max-body-total",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "256MiB",
     .min = 0,
     .max = 1099511627776.0,
     .offset = CFG(max_body_total_bytes),
     .doc = "Request bodies held in memory by all clients together (0 = no limit): 503 beyond"},
    {.key = "limits.max_body_bytes_per_client",
     .env = "SOLLOL_MAX_BODY_PER_CLIENT",
     .flag = "max-body-per-client",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "128MiB",
     .min = 0,
     .max = 1099511627776.0,
     .offset = CFG(max_body_bytes_per_client),
     .doc = "Request bodies held in memory for one client address (0 = no limit): 503 beyond"},
    {.key = "limits.min_body_rate",
     .env = "SOLLOL_MIN_BODY_RATE",
     .flag = "min-body-rate",
     .metavar = "SIZE",
     .type = SOL_CONF_SIZE,
     .def = "1KiB",
     .min = 0,
     .max = 1073741824.0,
     .offset = CFG(min_body_bytes_per_s),
     .doc = "Bytes per second a request body must average after limits.body_grace_ms (0 = "
            "off); slower connections are cut"},
    {.key = "limits.body_grace_ms",
     .env = "SOLLOL_BODY_GRACE",
     .flag = "body-grace",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "10s",
     .min = 0,
     .max = 3600000,
     .offset = CFG(body_grace_ms),
     .doc = "Time a request body may take before limits.min_body_rate applies"},
    {.key = "limits.auth_failures_per_client",
     .env = "SOLLOL_AUTH_FAILURES_PER_CLIENT",
     .flag = "auth-failures-per-client",
     .metavar = "RATE",
     .type = SOL_CONF_STRING,
     .def = "30/m",
     .offset = CFG(auth_failures_per_client),
     .after_set = check_auth_failures,
     .doc = "Failed authentications (401) one client address may make, as N/s, N/m or N/h "
            "(\"\" = no limit): 429 with Retry-After beyond"},
    {.key = "log_level",
     .env = "SOLLOL_LOG_LEVEL",
     .flag = "log-level",
     .type = SOL_CONF_ENUM,
     .choices = log_levels,
     .def = "info",
     .offset = CFG(log_level),
     .doc = "Most verbose log level written"},
    {.key = "log_format",
     .env = "SOLLOL_LOG_FORMAT",
     .flag = "log-format",
     .type = SOL_CONF_ENUM,
     .choices = log_formats,
     .def = "text",
     .offset = CFG(log_format_json),
     .doc = "Log line format"},
    {.key = "demo",
     .env = "SOLLOL_DEMO",
     .flag = "demo",
     .type = SOL_CONF_BOOL,
     .def = "false",
     .offset = CFG(demo),
     .doc = "Start demo_nodes simulated Ollama nodes (ollama-sim) and route to them"},
    {.key = "demo_nodes",
     .env = "SOLLOL_DEMO_NODES",
     .flag = "demo-nodes",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "3",
     .min = 1,
     .max = 8,
     .offset = CFG(demo_nodes),
     .doc = "Number of simulated nodes in demo mode"},
    {.key = "sim_path",
     .env = "SOLLOL_SIM_PATH",
     .flag = "sim-path",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(sim_path),
     .doc = "ollama-sim binary for demo mode (empty = the one next to sollold)"},
    {.key = "model_sharding_enabled",
     .env = "SOLLOL_MODEL_SHARDING",
     .flag = "model-sharding",
     .type = SOL_CONF_BOOL,
     .def = "false",
     .offset = CFG(model_sharding_enabled),
     .doc = "Serve models too large for one node with llama-server over RPC server backends"},
    {.key = "rpc_backends",
     .env = "RPC_BACKENDS",
     .flag = "rpc-backends",
     .metavar = "H:P,...",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(rpc_backends),
     .after_set = check_rpc_backends,
     .doc = "RPC server backends: [{\"host\",\"port\"}] (env: host:port,host:port)"},
    {.key = "rpc_backends_file",
     .env = "SOLLOL_RPC_BACKENDS_FILE",
     .flag = "rpc-backends-file",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(rpc_backends_file),
     .doc = "rpc_backends.conf file: host[:port] per line, # comments"},
    {.key = "rpc_version",
     .env = "SOLLOL_RPC_VERSION",
     .flag = "rpc-version",
     .metavar = "MAJ.MIN",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(rpc_version),
     .doc = "Required RPC protocol version (empty = ask the RPC server beside llama-server)"},
    {.key = "rpc_probe_timeout_ms",
     .env = "SOLLOL_RPC_PROBE_TIMEOUT",
     .flag = "rpc-probe-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "3s",
     .min = 10,
     .max = 600000,
     .offset = CFG(rpc_probe_timeout_ms),
     .doc = "Time allowed for one RPC server probe"},
    {.key = "sharded_models",
     .env = "SOLLOL_SHARDED_MODELS",
     .flag = "sharded-models",
     .metavar = "A,B",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(sharded_models),
     .doc = "Models served by the sharded path (env: comma-separated names)"},
    {.key = "sharding_auto",
     .env = "SOLLOL_SHARDING_AUTO",
     .flag = "sharding-auto",
     .type = SOL_CONF_BOOL,
     .def = "false",
     .offset = CFG(sharding_auto),
     .doc = "Also shard a model that no node has installed but the Ollama store holds"},
    {.key = "model_paths",
     .env = "SOLLOL_MODEL_PATHS",
     .flag = "model-paths",
     .metavar = "JSON",
     .type = SOL_CONF_JSON,
     .def = "{}",
     .offset = CFG(model_paths),
     .doc = "Explicit GGUF path per model name (wins over the Ollama store)"},
    {.key = "local_rpc_servers",
     .env = "SOLLOL_LOCAL_RPC_SERVERS",
     .flag = "local-rpc-servers",
     .metavar = "JSON",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(local_rpc_servers),
     .doc = "RPC server processes (ggml-rpc-server) to run and supervise on this machine"},
    {.key = "llama_server.binary",
     .env = "SOLLOL_LLAMA_SERVER",
     .flag = "llama-server",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .def = "llama-server",
     .offset = CFG(llama_binary),
     .doc = "llama-server program (PATH is searched)"},
    {.key = "llama_server.rpc_server_binary",
     .env = "SOLLOL_RPC_SERVER",
     .flag = "rpc-server",
     .metavar = "PATH",
     .type = SOL_CONF_STRING,
     .def = "",
     .offset = CFG(rpc_server_binary),
     .doc =
         "RPC server program (empty = ggml-rpc-server, else rpc-server, found as llama-server is)"},
    {.key = "llama_server.extra_args",
     .env = "SOLLOL_LLAMA_EXTRA_ARGS",
     .flag = "llama-extra-args",
     .metavar = "ARGS",
     .type = SOL_CONF_JSON,
     .def = "[]",
     .offset = CFG(llama_extra_args),
     .doc = "Extra llama-server arguments"},
    {.key = "llama_server.ctx_size",
     .env = "SOLLOL_LLAMA_CTX_SIZE",
     .flag = "llama-ctx-size",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "4096",
     .min = 0,
     .max = 16777216,
     .offset = CFG(llama_ctx_size),
     .doc = "llama-server -c: context size shared by all slots (0 = the model's)"},
    {.key = "llama_server.parallel",
     .env = "SOLLOL_LLAMA_PARALLEL",
     .flag = "llama-parallel",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "1",
     .min = 1,
     .max = 256,
     .offset = CFG(llama_parallel),
     .doc = "llama-server -np: slots, and requests in flight at most"},
    {.key = "llama_server.embeddings",
     .env = "SOLLOL_LLAMA_EMBEDDINGS",
     .flag = "llama-embeddings",
     .type = SOL_CONF_BOOL,
     .def = "false",
     .offset = CFG(llama_embeddings),
     .doc = "Start llama-server with --embeddings and serve /api/embed through it"},
    {.key = "llama_server.startup_timeout_ms",
     .env = "SOLLOL_LLAMA_STARTUP_TIMEOUT",
     .flag = "llama-startup-timeout",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "10m",
     .min = 100,
     .max = 86400000,
     .offset = CFG(llama_startup_timeout_ms),
     .doc = "Time allowed from launch to /health 200"},
    {.key = "llama_server.idle_unload_ms",
     .env = "SOLLOL_LLAMA_IDLE_UNLOAD",
     .flag = "llama-idle-unload",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "30m",
     .min = 0,
     .max = 604800000,
     .offset = CFG(llama_idle_unload_ms),
     .doc = "Idle time before llama-server is stopped (0 = never)"},
    {.key = "llama_server.port_min",
     .env = "SOLLOL_LLAMA_PORT_MIN",
     .flag = "llama-port-min",
     .metavar = "PORT",
     .type = SOL_CONF_INT,
     .def = "0",
     .min = 0,
     .max = 65535,
     .offset = CFG(llama_port_min),
     .doc = "Lowest loopback port for llama-server (0 = any free port)"},
    {.key = "llama_server.port_max",
     .env = "SOLLOL_LLAMA_PORT_MAX",
     .flag = "llama-port-max",
     .metavar = "PORT",
     .type = SOL_CONF_INT,
     .def = "0",
     .min = 0,
     .max = 65535,
     .offset = CFG(llama_port_max),
     .doc = "Highest loopback port for llama-server"},
    {.key = "llama_server.restart_backoff_min_ms",
     .env = "SOLLOL_LLAMA_BACKOFF_MIN",
     .flag = "llama-backoff-min",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "1s",
     .min = 1,
     .max = 3600000,
     .offset = CFG(llama_backoff_min_ms),
     .doc = "First restart delay after llama-server exits; doubles per exit"},
    {.key = "llama_server.restart_backoff_max_ms",
     .env = "SOLLOL_LLAMA_BACKOFF_MAX",
     .flag = "llama-backoff-max",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "60s",
     .min = 1,
     .max = 86400000,
     .offset = CFG(llama_backoff_max_ms),
     .doc = "Longest restart delay"},
    {.key = "llama_server.healthy_reset_ms",
     .env = "SOLLOL_LLAMA_HEALTHY_RESET",
     .flag = "llama-healthy-reset",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5m",
     .min = 1,
     .max = 86400000,
     .offset = CFG(llama_healthy_reset_ms),
     .doc = "Healthy time after which the restart delay is back to its minimum"},
    {.key = "llama_server.crash_window_ms",
     .env = "SOLLOL_LLAMA_CRASH_WINDOW",
     .flag = "llama-crash-window",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "10m",
     .min = 1,
     .max = 86400000,
     .offset = CFG(llama_crash_window_ms),
     .doc = "Window in which crash_limit exits mark the model failed"},
    {.key = "llama_server.crash_limit",
     .env = "SOLLOL_LLAMA_CRASH_LIMIT",
     .flag = "llama-crash-limit",
     .metavar = "N",
     .type = SOL_CONF_INT,
     .def = "5",
     .min = 1,
     .max = 1000,
     .offset = CFG(llama_crash_limit),
     .doc = "Exits within crash_window_ms that mark the model failed"},
    {.key = "llama_server.stop_grace_ms",
     .env = "SOLLOL_LLAMA_STOP_GRACE",
     .flag = "llama-stop-grace",
     .metavar = "DURATION",
     .type = SOL_CONF_DURATION_MS,
     .def = "5s",
     .min = 1,
     .max = 600000,
     .offset = CFG(llama_stop_grace_ms),
     .doc = "Time between SIGTERM and SIGKILL when a child is stopped"},
    {.flag = "check-config",
     .type = SOL_CONF_ACTION,
     .doc = "Validate the configuration, print a summary and exit (non-zero on error)"},
    {.flag = "print-config",
     .type = SOL_CONF_ACTION,
     .doc = "Print the effective configuration as JSON and exit"},
    {.flag = "version", .type = SOL_CONF_ACTION, .doc = "Print the version and exit"},
    {.flag = "help", .type = SOL_CONF_ACTION, .doc = "Print this help and exit (also -h)"},
};
const size_t sol_config_n_keys = sizeof sol_config_keys / sizeof sol_config_keys[0];

const struct sol_config_key sol_config_node_keys[] = {
    {.key = "url",
     .type = SOL_CONF_STRING,
     .offset = NODE(url),
     .flags = SOL_CK_REQUIRED,
     .after_set = derive_node_url,
     .doc = "Node address, OLLAMA_HOST syntax (no scheme = http and port 11434)"},
    {.key = "name",
     .type = SOL_CONF_STRING,
     .offset = NODE(name),
     .after_set = check_node_name,
     .doc = "Unique name for logs and metrics (default host:port)"},
    {.key = "max_concurrent",
     .type = SOL_CONF_INT,
     .def = "4",
     .min = 1,
     .max = 1024,
     .offset = NODE(max_concurrent),
     .doc = "Requests in flight to this node at most"},
    {.key = "weight",
     .type = SOL_CONF_DOUBLE,
     .def = "1",
     .min = 0.001,
     .max = 1000,
     .offset = NODE(weight),
     .doc = "Relative share of traffic"},
    {.key = "headers",
     .type = SOL_CONF_HEADERS,
     .offset = NODE(header_lines),
     .doc = "Extra HTTP headers sent to this node (e.g. Authorization)"},
};
const size_t sol_config_n_node_keys = sizeof sol_config_node_keys / sizeof sol_config_node_keys[0];

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* Where a value came from, for error messages: "file /x", "env X", "flag --x". */
struct src {
    const char *kind; /* "file", "env", "flag", "default" */
    const char *name; /* path, variable or flag (with "--") */
};

static void *field_at(void *obj, const struct sol_config_key *k)
{
    return (char *)obj + k->offset;
}

static const void *cfield_at(const void *obj, const struct sol_config_key *k)
{
    return (const char *)obj + k->offset;
}

/* Rows whose field is a malloc'd char * (freed and copied with the config). */
static int owns_text(const struct sol_config_key *k)
{
    return k->type == SOL_CONF_STRING || k->type == SOL_CONF_JSON;
}

/* Copies a value for display in a message: at most ~60 bytes, control
 * characters replaced, so a hostile or binary value cannot break the line. */
static const char *shown(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < n; i++) {
        if (i >= 60) {
            buf[j++] = '.';
            buf[j++] = '.';
            buf[j++] = '.';
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[j] = '\0';
    return buf;
}

static int oom(char *why, size_t whylen)
{
    snprintf(why, whylen, "out of memory");
    return -1;
}

/* "config: KEY: WHAT (SOURCE)"; key and source may be NULL. Returns -1. */
static int fail(char *err, size_t errlen, const char *key, const struct src *src, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *key, const struct src *src, const char *fmt,
                ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char where[320] = "";
    if (src && src->kind)
        snprintf(where, sizeof where, " (%s%s%s)", src->kind, src->name ? " " : "",
                 src->name ? src->name : "");
    if (key)
        snprintf(err, errlen, "config: %s: %s%s", key, what, where);
    else
        snprintf(err, errlen, "config: %s%s", what, where);
    return -1;
}

static char *dup_range(const char *b, const char *e)
{
    size_t n = (size_t)(e - b);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, b, n);
        s[n] = '\0';
    }
    return s;
}

static void trim_range(const char **b, const char **e)
{
    while (*b < *e && isspace((unsigned char)**b))
        (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* Copy of s without surrounding white space, in buf; NULL if it does not fit. */
static const char *trimmed(const char *s, char *buf, size_t n)
{
    const char *b = s, *e = s + strlen(s);
    trim_range(&b, &e);
    if ((size_t)(e - b) >= n)
        return NULL;
    memcpy(buf, b, (size_t)(e - b));
    buf[e - b] = '\0';
    return buf;
}

static const char *env_get(char **envp, const char *name)
{
    if (!envp || !name)
        return NULL;
    size_t n = strlen(name);
    for (char **p = envp; *p; p++)
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

/* Environment values that are empty count as unset, as in Ollama. */
static const char *env_value(char **envp, const char *name)
{
    const char *v = env_get(envp, name);
    return v && *v ? v : NULL;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "an invalid value";
}

/* ------------------------------------------------------------------ */
/* Value parsers: text -> value, or -1 with a bare reason               */
/* ------------------------------------------------------------------ */

static int parse_int(const char *text, long long *out, char *why, size_t whylen)
{
    char buf[64], show[80];
    const char *s = trimmed(text, buf, sizeof buf);
    char *end;
    errno = 0;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno) {
        snprintf(why, whylen, "invalid integer '%s'", shown(text, show, sizeof show));
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *text, int *out, char *why, size_t whylen)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    char buf[16], show[80];
    const char *s = trimmed(text, buf, sizeof buf);
    for (int i = 0; s && i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    snprintf(why, whylen, "invalid boolean '%s' (use true or false)",
             shown(text, show, sizeof show));
    return -1;
}

static int parse_double(const char *text, double *out, char *why, size_t whylen)
{
    char buf[64], show[80];
    const char *s = trimmed(text, buf, sizeof buf);
    char *end;
    errno = 0;
    double v = s && *s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v)) {
        snprintf(why, whylen, "invalid number '%s'", shown(text, show, sizeof show));
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_enum(const struct sol_config_key *k, const char *text, int *out, char *why,
                      size_t whylen)
{
    char buf[32], show[80], list[128] = "";
    const char *s = trimmed(text, buf, sizeof buf);
    for (int i = 0; k->choices[i]; i++) {
        if (s && strcasecmp(s, k->choices[i]) == 0) {
            *out = i;
            return 0;
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", k->choices[i]);
    }
    snprintf(why, whylen, "invalid value '%s' (expected one of: %s)",
             shown(text, show, sizeof show), list);
    return -1;
}

/*
 * Reads "digits[.digits]" at *p. Exact integer arithmetic (no libm, no
 * rounding surprises such as 1.1s -> 1100.0000000000002 ms). Returns 0 if
 * there were no digits at all.
 */
struct decimal {
    unsigned long long whole, frac, scale; /* value = whole + frac / scale */
    int overflow;
};

static int read_decimal(const char **p, struct decimal *d)
{
    int digits = 0;
    d->whole = 0;
    d->frac = 0;
    d->scale = 1;
    d->overflow = 0;
    while (isdigit((unsigned char)**p)) {
        unsigned c = (unsigned)(**p - '0');
        if (d->whole > (ULLONG_MAX - c) / 10)
            d->overflow = 1;
        else
            d->whole = d->whole * 10 + c;
        (*p)++;
        digits++;
    }
    if (**p == '.') {
        (*p)++;
        while (isdigit((unsigned char)**p)) {
            if (d->scale < 1000000000000000000ULL) { /* later digits cannot matter */
                d->frac = d->frac * 10 + (unsigned)(**p - '0');
                d->scale *= 10;
            }
            (*p)++;
            digits++;
        }
    }
    return digits;
}

/* whole*unit + frac*unit/scale, rounded down; -1 on overflow. */
static int scale_decimal(const struct decimal *d, unsigned long long unit, unsigned long long *out)
{
    if (d->overflow || (d->whole && d->whole > ULLONG_MAX / unit))
        return -1;
    unsigned long long v = d->whole * unit;
    unsigned long long f = (unsigned long long)((long double)d->frac * unit / d->scale);
    if (v > ULLONG_MAX - f)
        return -1;
    *out = v + f;
    return 0;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/*
 * Durations: a bare integer is milliseconds; otherwise a Go duration, a
 * sequence of number+unit ("1h30m", "1.5s", "250ms"; units ns, us, µs, ms,
 * s, m, h). Sub-millisecond remainders are rounded up, so a positive
 * duration never becomes 0.
 */
static int parse_duration(const char *text, unsigned long long *ms_out, char *why, size_t whylen)
{
    static const struct {
        const char *name;
        unsigned long long ns;
    } units[] = {{"ns", 1ULL},           {"us", 1000ULL},
                 {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
                 {"\xce\xbcs", 1000ULL}, /* U+03BC greek mu */
                 {"ms", 1000000ULL},     {"s", 1000000000ULL},
                 {"m", 60000000000ULL},  {"h", 3600000000000ULL}};
    char buf[64], show[80];
    const char *s = trimmed(text, buf, sizeof buf);
    if (!s) {
        snprintf(why, whylen, "invalid duration '%s'", shown(text, show, sizeof show));
        return -1;
    }
    if (!*s) {
        snprintf(why, whylen, "empty duration (use e.g. 1500, 1500ms, 5s, 2m)");
        return -1;
    }
    if (all_digits(s)) {
        struct decimal d;
        const char *p = s;
        read_decimal(&p, &d);
        if (d.overflow) {
            snprintf(why, whylen, "duration '%s' is too large", s);
            return -1;
        }
        *ms_out = d.whole;
        return 0;
    }
    const char *p = s;
    if (*p == '-') {
        snprintf(why, whylen, "duration '%s' must not be negative", s);
        return -1;
    }
    if (*p == '+')
        p++;
    unsigned long long total = 0;
    while (*p) {
        struct decimal d;
        if (!read_decimal(&p, &d)) {
            snprintf(why, whylen, "invalid duration '%s' (use e.g. 1500, 1500ms, 5s, 2m, 1h30m)",
                     s);
            return -1;
        }
        const char *u = p;
        while (*p && !isdigit((unsigned char)*p) && *p != '.')
            p++;
        size_t ulen = (size_t)(p - u);
        if (ulen == 0) {
            snprintf(why, whylen,
                     "missing unit in duration '%s' (units: ns, us, ms, s, m, h; a bare integer "
                     "means milliseconds)",
                     s);
            return -1;
        }
        unsigned long long unit = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
                unit = units[i].ns;
        if (!unit) {
            snprintf(why, whylen, "unknown unit '%.*s' in duration '%s' (use ns, us, ms, s, m, h)",
                     (int)ulen, u, s);
            return -1;
        }
        unsigned long long part;
        if (scale_decimal(&d, unit, &part) || total > ULLONG_MAX - part) {
            snprintf(why, whylen, "duration '%s' is too large", s);
            return -1;
        }
        total += part;
    }
    *ms_out = total / 1000000ULL + (total % 1000000ULL != 0);
    return 0;
}

/*
 * Sizes: bytes, or a number with a unit: B, KB/MB/GB/TB (powers of 1000) or
 * KiB/MiB/GiB/TiB (powers of 1024), case-insensitive, optional space.
 * Bare K/M/G/T are refused as ambiguous rather than guessed.
 */
static int parse_size(const char *text, unsigned long long *out, char *why, size_t whylen)
{
    static const struct {
        const char *name;
        unsigned long long mult;
    } units[] = {{"", 1ULL},          {"b", 1ULL},           {"kb", 1000ULL},
                 {"mb", 1000000ULL},  {"gb", 1000000000ULL}, {"tb", 1000000000000ULL},
                 {"kib", 1ULL << 10}, {"mib", 1ULL << 20},   {"gib", 1ULL << 30},
                 {"tib", 1ULL << 40}};
    char buf[64], show[80];
    const char *s = trimmed(text, buf, sizeof buf);
    if (!s || !*s) {
        snprintf(why, whylen, "invalid size '%s' (use e.g. 1048576, 512KiB, 64MiB, 1GB)",
                 shown(text, show, sizeof show));
        return -1;
    }
    const char *p = s;
    struct decimal d;
    if (!read_decimal(&p, &d)) {
        snprintf(why, whylen, "invalid size '%s' (use e.g. 1048576, 512KiB, 64MiB, 1GB)", s);
        return -1;
    }
    while (*p == ' ')
        p++;
    const char *u = p;
    while (isalpha((unsigned char)*p))
        p++;
    size_t ulen = (size_t)(p - u);
    if (*p) {
        snprintf(why, whylen, "invalid size '%s' (use e.g. 1048576, 512KiB, 64MiB, 1GB)", s);
        return -1;
    }
    if (ulen == 1 && strchr("kKmMgGtT", *u)) {
        snprintf(why, whylen,
                 "ambiguous unit '%c' in size '%s' (use %ciB for powers of 1024 or %cB "
                 "for powers of 1000)",
                 *u, s, toupper((unsigned char)*u), toupper((unsigned char)*u));
        return -1;
    }
    unsigned long long mult = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == ulen && strncasecmp(units[i].name, u, ulen) == 0)
            mult = units[i].mult;
    if (!mult) {
        snprintf(why, whylen,
                 "unknown unit '%.*s' in size '%s' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)",
                 (int)ulen, u, s);
        return -1;
    }
    if (d.frac && mult == 1) {
        snprintf(why, whylen, "size '%s' is not a whole number of bytes", s);
        return -1;
    }
    if (scale_decimal(&d, mult, out)) {
        snprintf(why, whylen, "size '%s' is too large", s);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* OLLAMA_HOST-style addresses                                         */
/* ------------------------------------------------------------------ */

static int is_host_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_';
}

/* RFC 3986 path characters except the quote: surrounding quotes are
 * stripped from a URL (shell habits), so a path ending in one would not
 * survive --print-config and --config. */
static int is_path_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("-._~!$&()*+,;=:@%/", c));
}

/* Parses an IP literal (v6 first, then v4) and writes its canonical text. */
static int parse_ip_literal(const char *b, const char *e, char *out, size_t outlen)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];
    if ((size_t)(e - b) >= sizeof tmp)
        return -1;
    memcpy(tmp, b, (size_t)(e - b));
    tmp[e - b] = '\0';
    if (inet_pton(AF_INET6, tmp, bin) == 1)
        return inet_ntop(AF_INET6, bin, out, (socklen_t)outlen) ? 0 : -1;
    if (inet_pton(AF_INET, tmp, bin) == 1)
        return inet_ntop(AF_INET, bin, out, (socklen_t)outlen) ? 0 : -1;
    return -1;
}

static int parse_port(const char *b, const char *e, int *port, char *err, size_t errlen)
{
    char show[80], raw[64];
    long v = 0;
    int ok = e > b && e - b <= 5;
    for (const char *p = b; ok && p < e; p++) {
        if (!isdigit((unsigned char)*p))
            ok = 0;
        else
            v = v * 10 + (*p - '0');
    }
    if (!ok || v > 65535) {
        size_t n = (size_t)(e - b) < sizeof raw ? (size_t)(e - b) : sizeof raw - 1;
        memcpy(raw, b, n);
        raw[n] = '\0';
        snprintf(err, errlen, "invalid port '%s'", shown(raw, show, sizeof show));
        return -1;
    }
    *port = (int)v;
    return 0;
}

int sol_config_parse_host(const char *text, int default_port, char **scheme_out, char **host_out,
                          int *port_out, char **path_out, char *err, size_t errlen)
{
    char show[80];
    if (!text)
        text = "";
    const char *b = text, *e = text + strlen(text);
    /* Ollama: TrimSpace, then Trim quotes, then TrimSpace again. */
    trim_range(&b, &e);
    while (b < e && (*b == '"' || *b == '\''))
        b++;
    while (e > b && (e[-1] == '"' || e[-1] == '\''))
        e--;
    trim_range(&b, &e);

    const char *scheme = "http";
    int port = default_port;
    for (const char *p = b; p + 3 <= e; p++) {
        if (memcmp(p, "://", 3) != 0)
            continue;
        size_t n = (size_t)(p - b);
        if (n == 4 && strncasecmp(b, "http", 4) == 0) {
            port = 80;
        } else if (n == 5 && strncasecmp(b, "https", 5) == 0) {
            scheme = "https";
            port = 443;
        } else {
            char raw[64];
            snprintf(raw, sizeof raw, "%.*s", (int)(n < 60 ? n : 60), b);
            snprintf(err, errlen, "unsupported scheme '%s' (use http:// or https://)",
                     shown(raw, show, sizeof show));
            return -1;
        }
        b = p + 3;
        break;
    }

    /* Everything from the first '/' is the path prefix. */
    const char *hp_end = memchr(b, '/', (size_t)(e - b));
    const char *path_b = hp_end ? hp_end : e, *path_e = e;
    if (!hp_end)
        hp_end = e;
    while (path_e > path_b && path_e[-1] == '/')
        path_e--;
    for (const char *p = path_b; p < path_e; p++) {
        if (!is_path_char((unsigned char)*p)) {
            char raw[128];
            snprintf(raw, sizeof raw, "%.*s", (int)(path_e - path_b < 100 ? path_e - path_b : 100),
                     path_b);
            snprintf(err, errlen, "invalid character '%c' in path '%s'",
                     isprint((unsigned char)*p) ? *p : '?', shown(raw, show, sizeof show));
            return -1;
        }
    }

    char host[256];
    host[0] = '\0';
    const char *hb = b;
    if (hb == hp_end) {
        /* Ollama: an empty address means 127.0.0.1. */
        snprintf(host, sizeof host, "127.0.0.1");
    } else if (*hb == '[') {
        const char *close = memchr(hb, ']', (size_t)(hp_end - hb));
        if (!close || parse_ip_literal(hb + 1, close, host, sizeof host) != 0) {
            char raw[128];
            snprintf(raw, sizeof raw, "%.*s", (int)(hp_end - hb < 100 ? hp_end - hb : 100), hb);
            snprintf(err, errlen, "invalid IPv6 address '%s'", shown(raw, show, sizeof show));
            return -1;
        }
        const char *rest = close + 1;
        if (rest < hp_end) {
            if (*rest != ':') {
                char raw[128];
                snprintf(raw, sizeof raw, "%.*s", (int)(hp_end - hb < 100 ? hp_end - hb : 100), hb);
                snprintf(err, errlen, "unexpected text after ']' in '%s'",
                         shown(raw, show, sizeof show));
                return -1;
            }
            if (parse_port(rest + 1, hp_end, &port, err, errlen))
                return -1;
        }
    } else {
        int colons = 0;
        const char *colon = NULL;
        for (const char *p = hb; p < hp_end; p++)
            if (*p == ':') {
                colons++;
                if (!colon)
                    colon = p;
            }
        const char *he = colons == 1 ? colon : hp_end;
        if (colons > 1) {
            /* Only a bare IPv6 literal may have several colons (no port then). */
            if (parse_ip_literal(hb, hp_end, host, sizeof host) != 0) {
                char raw[128];
                snprintf(raw, sizeof raw, "%.*s", (int)(hp_end - hb < 100 ? hp_end - hb : 100), hb);
                snprintf(err, errlen,
                         "invalid address '%s' (write IPv6 addresses with a port as [addr]:port)",
                         shown(raw, show, sizeof show));
                return -1;
            }
        } else {
            int ok = he - hb < (long)sizeof host;
            for (const char *p = hb; ok && p < he; p++)
                ok = is_host_char((unsigned char)*p);
            if (!ok) {
                char raw[128];
                snprintf(raw, sizeof raw, "%.*s", (int)(he - hb < 100 ? he - hb : 100), hb);
                snprintf(err, errlen, "invalid host '%s'", shown(raw, show, sizeof show));
                return -1;
            }
            memcpy(host, hb, (size_t)(he - hb));
            host[he - hb] = '\0';
            if (colons == 1 && parse_port(colon + 1, hp_end, &port, err, errlen))
                return -1;
        }
    }

    char *s = scheme_out ? strdup(scheme) : NULL;
    char *h = strdup(host);
    char *pp = path_out ? dup_range(path_b, path_e) : NULL;
    if ((scheme_out && !s) || !h || (path_out && !pp)) {
        free(s);
        free(h);
        free(pp);
        return oom(err, errlen);
    }
    if (scheme_out)
        *scheme_out = s;
    *host_out = h;
    *port_out = port;
    if (path_out)
        *path_out = pp;
    return 0;
}

/* ------------------------------------------------------------------ */
/* after_set hooks                                                     */
/* ------------------------------------------------------------------ */

static int derive_listen(void *obj, char *why, size_t whylen)
{
    struct sol_config *cfg = obj;
    char *scheme = NULL, *host = NULL, *path = NULL;
    int port;
    if (sol_config_parse_host(cfg->listen, SOL_OLLAMA_DEFAULT_PORT, &scheme, &host, &port, &path,
                              why, whylen))
        return -1;
    int rc = 0;
    if (strcmp(scheme, "http") != 0) {
        snprintf(why, whylen,
                 "https is not supported for listen: sollold serves plain HTTP (terminate TLS in "
                 "front of it)");
        rc = -1;
    } else if (*path) {
        snprintf(why, whylen, "a path prefix ('%.100s') is not supported for listen", path);
        rc = -1;
    } else {
        free(cfg->listen_host);
        cfg->listen_host = host;
        cfg->listen_port = port;
        host = NULL;
    }
    free(scheme);
    free(host);
    free(path);
    return rc;
}

static int derive_node_url(void *obj, char *why, size_t whylen)
{
    struct sol_node_conf *n = obj;
    char *scheme = NULL, *host = NULL, *path = NULL, show[80];
    int port;
    /* Ollama maps an empty address to 127.0.0.1; for a node it is a mistake. */
    if (n->url[strspn(n->url, " \t\r\n\"'")] == '\0') {
        snprintf(why, whylen, "empty URL");
        return -1;
    }
    if (sol_config_parse_host(n->url, SOL_OLLAMA_DEFAULT_PORT, &scheme, &host, &port, &path, why,
                              whylen))
        return -1;
    if (!*host) {
        snprintf(why, whylen, "missing host in '%s'", shown(n->url, show, sizeof show));
        free(scheme);
        free(host);
        free(path);
        return -1;
    }
    const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    char *hh = NULL, *base = NULL;
    if (asprintf(&hh, "%s%s%s:%d", lb, host, rb, port) < 0)
        hh = NULL;
    if (hh && asprintf(&base, "%s://%s%s", scheme, hh, path) < 0)
        base = NULL;
    if (!hh || !base) {
        free(hh);
        free(scheme);
        free(host);
        free(path);
        return oom(why, whylen);
    }
    free(n->scheme);
    free(n->host);
    free(n->path_prefix);
    free(n->host_header);
    free(n->base_url);
    n->scheme = scheme;
    n->host = host;
    n->port = port;
    n->path_prefix = path;
    n->host_header = hh;
    n->base_url = base;
    return 0;
}

static int check_discovery_cidrs(void *obj, char *why, size_t whylen)
{
    const struct sol_config *cfg = obj;
    /* Syntax and size only: the scan itself is discovery.c's. */
    return sol_discovery_parse(cfg->discovery_cidrs, SOL_OLLAMA_DEFAULT_PORT, NULL, why, whylen);
}

/* rpc_backends: checked with the coordinator's own parser, so a typo is a
 * start-up error and not a backend that is never probed. */
static int check_rpc_backends(void *obj, char *why, size_t whylen)
{
    const struct sol_config *cfg = obj;
    return sol_rpc_parse_backends(cfg->rpc_backends, NULL, 0, NULL, why, whylen);
}

static int check_node_name(void *obj, char *why, size_t whylen)
{
    const struct sol_node_conf *n = obj;
    char show[80];
    size_t len = strlen(n->name);
    if (len == 0 || len > MAX_NODE_NAME) {
        snprintf(why, whylen, "name must be 1 to %d characters", MAX_NODE_NAME);
        return -1;
    }
    for (const char *p = n->name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || strchr(",=\"'\\", c)) {
            snprintf(why, whylen,
                     "invalid name '%s' (printable ASCII without spaces, quotes, '\\', ',' or "
                     "'=')",
                     shown(n->name, show, sizeof show));
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Storing values                                                      */
/* ------------------------------------------------------------------ */

/* auth.c checks its own sections, so --check-config reports them. */
static int check_auth_keys(void *obj, char *why, size_t whylen)
{
    return sol_auth_check_keys_json(((struct sol_config *)obj)->auth_keys, why, whylen);
}

static int check_auth_keys_file(void *obj, char *why, size_t whylen)
{
    const char *path = ((struct sol_config *)obj)->auth_keys_file;
    return path && *path ? sol_auth_check_keys_file(path, why, whylen) : 0;
}

/* As gin-contrib/cors validates Ollama's origins (it refuses to start
 * otherwise): at most one '*', and without one an http(s) or browser
 * extension scheme. */
static int check_cors_origins(void *obj, char *why, size_t whylen)
{
    static const char *const schemes[] = {"http://",
                                          "https://",
                                          "chrome-extension://",
                                          "safari-extension://",
                                          "moz-extension://",
                                          "ms-browser-extension://"};
    const char *p = ((struct sol_config *)obj)->cors_origins;
    while (p && *p) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ",");
        size_t len = n;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        const char *star = memchr(p, '*', len);
        int ok = len == 0 || (star && !memchr(star + 1, '*', len - (size_t)(star - p) - 1));
        for (size_t i = 0; !ok && !star && i < sizeof schemes / sizeof schemes[0]; i++)
            ok = len >= strlen(schemes[i]) && strncasecmp(p, schemes[i], strlen(schemes[i])) == 0;
        if (!ok) {
            snprintf(why, whylen,
                     "bad origin '%.*s': at most one '*', and without one it must start with "
                     "http://, https:// or a browser extension scheme",
                     (int)(len < 100 ? len : 100), p);
            return -1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

static int check_auth_failures(void *obj, char *why, size_t whylen)
{
    const char *r = ((struct sol_config *)obj)->auth_failures_per_client;
    double per_ms, burst;
    return r && *r ? sol_auth_parse_rate(r, &per_ms, &burst, why, whylen) : 0;
}

static int check_auth_public(void *obj, char *why, size_t whylen)
{
    return sol_auth_check_public_json(((struct sol_config *)obj)->auth_public, why, whylen);
}

static int after(void *obj, const struct sol_config_key *k, char *why, size_t whylen)
{
    return k->after_set ? k->after_set(obj, why, whylen) : 0;
}

static int check_range(const struct sol_config_key *k, double v, char *why, size_t whylen)
{
    if (v >= k->min && v <= k->max)
        return 0;
    const char *unit = k->type == SOL_CONF_DURATION_MS ? "ms"
                       : k->type == SOL_CONF_SIZE      ? " bytes"
                                                       : "";
    snprintf(why, whylen, "must be between %.15g%s and %.15g%s, got %.15g%s", k->min, unit, k->max,
             unit, v, unit);
    return -1;
}

static int store_string(void *obj, const struct sol_config_key *k, const char *s, char *why,
                        size_t whylen)
{
    char *copy = strdup(s);
    if (!copy)
        return oom(why, whylen);
    char **f = field_at(obj, k);
    free(*f);
    *f = copy;
    return after(obj, k, why, whylen);
}

static int store_int(void *obj, const struct sol_config_key *k, long long v, char *why,
                     size_t whylen)
{
    if (check_range(k, (double)v, why, whylen))
        return -1;
    *(int *)field_at(obj, k) = (int)v;
    return after(obj, k, why, whylen);
}

/* Durations (unsigned ms) and sizes (unsigned long long bytes). */
static int store_ull(void *obj, const struct sol_config_key *k, unsigned long long v, char *why,
                     size_t whylen)
{
    if (check_range(k, (double)v, why, whylen))
        return -1;
    if (k->type == SOL_CONF_DURATION_MS)
        *(unsigned *)field_at(obj, k) = (unsigned)v;
    else
        *(unsigned long long *)field_at(obj, k) = v;
    return after(obj, k, why, whylen);
}

static int store_double(void *obj, const struct sol_config_key *k, double v, char *why,
                        size_t whylen)
{
    if (check_range(k, v, why, whylen))
        return -1;
    *(double *)field_at(obj, k) = v;
    return after(obj, k, why, whylen);
}

/* Sets a scalar from text (defaults, environment, flags). */
static int set_text(void *obj, const struct sol_config_key *k, const char *text, char *why,
                    size_t whylen)
{
    switch (k->type) {
    case SOL_CONF_STRING:
        return store_string(obj, k, text, why, whylen);
    case SOL_CONF_JSON: {
        /* A list or object given as JSON text is kept compact; any other
         * text as given (RPC_BACKENDS=h:p,h:p): the owner module parses it. */
        cJSON *v = cJSON_Parse(text);
        char *compact =
            v && (cJSON_IsArray(v) || cJSON_IsObject(v)) ? cJSON_PrintUnformatted(v) : NULL;
        cJSON_Delete(v);
        int rc = store_string(obj, k, compact ? compact : text, why, whylen);
        cJSON_free(compact);
        return rc;
    }
    case SOL_CONF_INT: {
        long long v;
        return parse_int(text, &v, why, whylen) ? -1 : store_int(obj, k, v, why, whylen);
    }
    case SOL_CONF_BOOL: {
        int v;
        if (parse_bool(text, &v, why, whylen))
            return -1;
        *(int *)field_at(obj, k) = v;
        return after(obj, k, why, whylen);
    }
    case SOL_CONF_DURATION_MS: {
        unsigned long long v;
        return parse_duration(text, &v, why, whylen) ? -1 : store_ull(obj, k, v, why, whylen);
    }
    case SOL_CONF_SIZE: {
        unsigned long long v;
        return parse_size(text, &v, why, whylen) ? -1 : store_ull(obj, k, v, why, whylen);
    }
    case SOL_CONF_ENUM: {
        int v;
        if (parse_enum(k, text, &v, why, whylen))
            return -1;
        *(int *)field_at(obj, k) = v;
        return after(obj, k, why, whylen);
    }
    case SOL_CONF_DOUBLE: {
        double v;
        return parse_double(text, &v, why, whylen) ? -1 : store_double(obj, k, v, why, whylen);
    }
    default:
        snprintf(why, whylen, "cannot be set from text");
        return -1;
    }
}

/* A JSON number that is a whole value in [lo, hi]. */
static int json_whole(const cJSON *v, double lo, double hi)
{
    double d = v->valuedouble;
    return cJSON_IsNumber(v) && d >= lo && d <= hi && d == (double)(long long)d;
}

static int set_headers(struct sol_node_conf *n, const cJSON *v, char *why, size_t whylen);

/* A list key given as a JSON array of strings: stored comma-separated, the
 * form the environment and flags use, so one parser serves all three. */
static int set_list(void *obj, const struct sol_config_key *k, const cJSON *arr, char *why,
                    size_t whylen)
{
    size_t len = 1;
    const cJSON *it;
    int idx = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || strchr(it->valuestring, ',')) {
            snprintf(why, whylen, "[%d]: expected a string without commas, got %s", idx,
                     cJSON_IsString(it) ? "a list" : json_type_name(it));
            return -1;
        }
        len += strlen(it->valuestring) + 1;
        idx++;
    }
    char *text = malloc(len);
    if (!text)
        return oom(why, whylen);
    text[0] = '\0';
    cJSON_ArrayForEach(it, arr)
    {
        if (text[0])
            strcat(text, ",");
        strcat(text, it->valuestring);
    }
    int rc = store_string(obj, k, text, why, whylen);
    free(text);
    return rc;
}

/* Sets a scalar (or a node's headers) from a JSON value of the file. */
static int set_json(void *obj, const struct sol_config_key *k, const cJSON *v, char *why,
                    size_t whylen)
{
    switch (k->type) {
    case SOL_CONF_STRING:
    case SOL_CONF_ENUM:
        if (k->type == SOL_CONF_STRING && (k->flags & SOL_CK_LIST) && cJSON_IsArray(v))
            return set_list(obj, k, v, why, whylen);
        if (!cJSON_IsString(v))
            break;
        return set_text(obj, k, v->valuestring, why, whylen);
    case SOL_CONF_INT:
        if (cJSON_IsNumber(v) && !json_whole(v, -9e15, 9e15)) {
            snprintf(why, whylen, "expected an integer, got %.15g", v->valuedouble);
            return -1;
        }
        if (!cJSON_IsNumber(v))
            break;
        return store_int(obj, k, (long long)v->valuedouble, why, whylen);
    case SOL_CONF_BOOL:
        if (!cJSON_IsBool(v))
            break;
        *(int *)field_at(obj, k) = cJSON_IsTrue(v);
        return after(obj, k, why, whylen);
    case SOL_CONF_DURATION_MS:
    case SOL_CONF_SIZE:
        if (cJSON_IsString(v))
            return set_text(obj, k, v->valuestring, why, whylen);
        if (cJSON_IsNumber(v) && !json_whole(v, 0, 9e15)) {
            snprintf(why, whylen, "expected a whole, non-negative number, got %.15g",
                     v->valuedouble);
            return -1;
        }
        if (!cJSON_IsNumber(v))
            break;
        return store_ull(obj, k, (unsigned long long)v->valuedouble, why, whylen);
    case SOL_CONF_DOUBLE:
        if (!cJSON_IsNumber(v))
            break;
        return store_double(obj, k, v->valuedouble, why, whylen);
    case SOL_CONF_HEADERS:
        if (!cJSON_IsObject(v))
            break;
        return set_headers(obj, v, why, whylen);
    case SOL_CONF_JSON: {
        if (cJSON_IsString(v))
            return store_string(obj, k, v->valuestring, why, whylen);
        char *text = cJSON_PrintUnformatted(v);
        if (!text)
            return oom(why, whylen);
        int rc = store_string(obj, k, text, why, whylen);
        cJSON_free(text);
        return rc;
    }
    default:
        snprintf(why, whylen, "cannot be set here");
        return -1;
    }
    static const char *const expected[] = {
        [SOL_CONF_STRING] = "a string",
        [SOL_CONF_INT] = "an integer",
        [SOL_CONF_BOOL] = "true or false",
        [SOL_CONF_DURATION_MS] = "a duration (integer milliseconds or a string like \"5s\")",
        [SOL_CONF_SIZE] = "a size (integer bytes or a string like \"64MiB\")",
        [SOL_CONF_ENUM] = "a string",
        [SOL_CONF_DOUBLE] = "a number",
        [SOL_CONF_HEADERS] = "an object of header names to string values",
        [SOL_CONF_JSON] = "JSON",
    };
    snprintf(why, whylen, "expected %s, got %s", expected[k->type], json_type_name(v));
    return -1;
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

static void free_headers(struct sol_node_conf *n)
{
    for (size_t i = 0; i < n->n_headers; i++)
        free(n->header_lines[i]);
    free(n->header_lines);
    n->header_lines = NULL;
    n->n_headers = 0;
}

static void node_free(struct sol_node_conf *n)
{
    for (size_t i = 0; i < sol_config_n_node_keys; i++)
        if (sol_config_node_keys[i].type == SOL_CONF_STRING)
            free(*(char **)field_at(n, &sol_config_node_keys[i]));
    free(n->scheme);
    free(n->host);
    free(n->path_prefix);
    free(n->base_url);
    free(n->host_header);
    free_headers(n);
    memset(n, 0, sizeof *n);
}

static void nodes_free(struct sol_node_conf *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        node_free(&nodes[i]);
    free(nodes);
}

static int is_token_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Headers the proxy itself must control: a node header must not replace them. */
static int is_reserved_header(const char *name)
{
    static const char *const reserved[] = {"host",       "content-length", "transfer-encoding",
                                           "connection", "keep-alive",     "upgrade",
                                           "te",         "trailer"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return 1;
    return 0;
}

static int set_headers(struct sol_node_conf *n, const cJSON *obj, char *why, size_t whylen)
{
    char show[80];
    size_t count = (size_t)cJSON_GetArraySize(obj);
    char **lines = calloc(count + 1, sizeof *lines);
    if (!lines)
        return oom(why, whylen);
    size_t i = 0;
    for (const cJSON *h = obj->child; h; h = h->next, i++) {
        const char *name = h->string;
        int ok = *name != '\0';
        for (const char *p = name; ok && *p; p++)
            ok = is_token_char((unsigned char)*p);
        if (!ok) {
            snprintf(why, whylen, "invalid header name '%s'", shown(name, show, sizeof show));
            goto fail;
        }
        if (is_reserved_header(name)) {
            snprintf(why, whylen, "header '%s' is set by sollold and cannot be overridden", name);
            goto fail;
        }
        for (const cJSON *p = obj->child; p != h; p = p->next)
            if (strcasecmp(p->string, name) == 0) {
                snprintf(why, whylen, "header '%s' is given twice", name);
                goto fail;
            }
        if (!cJSON_IsString(h)) {
            snprintf(why, whylen, "header '%s': expected a string, got %s", name,
                     json_type_name(h));
            goto fail;
        }
        /* The value is not echoed: it is often a secret. */
        for (const char *p = h->valuestring; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t') {
                snprintf(why, whylen, "header '%s': control character in value", name);
                goto fail;
            }
        if (asprintf(&lines[i], "%s: %s", name, h->valuestring) < 0) {
            lines[i] = NULL;
            oom(why, whylen);
            goto fail;
        }
    }
    free_headers(n);
    n->header_lines = lines;
    n->n_headers = count;
    return 0;
fail:
    for (size_t j = 0; j < count; j++)
        free(lines[j]);
    free(lines);
    return -1;
}

static const struct sol_config_key *find_node_key(const char *name)
{
    for (size_t i = 0; i < sol_config_n_node_keys; i++)
        if (strcmp(sol_config_node_keys[i].key, name) == 0)
            return &sol_config_node_keys[i];
    return NULL;
}

static int node_defaults(struct sol_node_conf *n, char *why, size_t whylen)
{
    for (size_t i = 0; i < sol_config_n_node_keys; i++) {
        const struct sol_config_key *k = &sol_config_node_keys[i];
        if (k->def && set_text(n, k, k->def, why, whylen))
            return -1;
    }
    return 0;
}

/* Levenshtein distance, for "did you mean" hints. Short strings only. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Writes " (did you mean 'x'?)" for the closest key within distance 2, else "". */
static void suggest(const char *name, const struct sol_config_key *keys, size_t n, char *buf,
                    size_t buflen)
{
    size_t best = 3;
    const char *hit = NULL;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].key)
            continue;
        size_t d = edit_distance(name, keys[i].key);
        if (d < best) {
            best = d;
            hit = keys[i].key;
        }
    }
    if (hit)
        snprintf(buf, buflen, " (did you mean '%s'?)", hit);
}

static int node_from_object(struct sol_node_conf *n, const cJSON *obj, size_t idx,
                            const struct src *src, char *err, size_t errlen)
{
    char why[512], key[MAX_KEY], show[80];
    for (const cJSON *it = obj->child; it; it = it->next) {
        snprintf(key, sizeof key, "nodes[%zu].%s", idx, shown(it->string, show, sizeof show));
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (strcmp(p->string, it->string) == 0)
                return fail(err, errlen, key, src, "key is given twice");
        const struct sol_config_key *k = find_node_key(it->string);
        if (!k) {
            char hint[96];
            suggest(it->string, sol_config_node_keys, sol_config_n_node_keys, hint, sizeof hint);
            snprintf(key, sizeof key, "nodes[%zu]", idx);
            return fail(err, errlen, key, src, "unknown key '%s'%s", shown(it->string, show, 60),
                        hint);
        }
        if (set_json(n, k, it, why, sizeof why))
            return fail(err, errlen, key, src, "%s", why);
    }
    for (size_t i = 0; i < sol_config_n_node_keys; i++) {
        const struct sol_config_key *k = &sol_config_node_keys[i];
        if ((k->flags & SOL_CK_REQUIRED) && !*(char **)field_at(n, k)) {
            snprintf(key, sizeof key, "nodes[%zu].%s", idx, k->key);
            return fail(err, errlen, key, src, "missing (every node needs a %s)", k->key);
        }
    }
    return 0;
}

/* "URL" or "NAME=URL" (flags, environment, and string entries in the file). */
static int node_from_spec(struct sol_node_conf *n, const char *spec, size_t idx,
                          const struct src *src, char *err, size_t errlen)
{
    char why[512], key[MAX_KEY];
    const char *b = spec, *e = spec + strlen(spec);
    trim_range(&b, &e);
    const char *eq = memchr(b, '=', (size_t)(e - b));
    const char *sch = strstr(b, "://");
    const char *ub = b;
    int rc = 0;
    if (eq && (!sch || eq < sch)) {
        const char *nb = b, *ne = eq;
        trim_range(&nb, &ne);
        char *name = dup_range(nb, ne);
        if (!name)
            return fail(err, errlen, NULL, src, "out of memory");
        rc = set_text(n, find_node_key("name"), name, why, sizeof why);
        free(name);
        if (rc) {
            snprintf(key, sizeof key, "nodes[%zu].name", idx);
            return fail(err, errlen, key, src, "%s", why);
        }
        ub = eq + 1;
        trim_range(&ub, &e);
    }
    snprintf(key, sizeof key, "nodes[%zu].url", idx);
    if (ub == e)
        return fail(err, errlen, key, src, "empty URL");
    char *url = dup_range(ub, e);
    if (!url)
        return fail(err, errlen, NULL, src, "out of memory");
    rc = set_text(n, find_node_key("url"), url, why, sizeof why);
    free(url);
    return rc ? fail(err, errlen, key, src, "%s", why) : 0;
}

/* Default names, then uniqueness of names and of endpoints. */
static int finish_nodes(struct sol_node_conf *nodes, size_t n, const struct src *src, char *err,
                        size_t errlen)
{
    char key[MAX_KEY];
    for (size_t i = 0; i < n; i++) {
        int defaulted = 0;
        if (!nodes[i].name) {
            nodes[i].name = strdup(nodes[i].host_header);
            if (!nodes[i].name)
                return fail(err, errlen, NULL, src, "out of memory");
            defaulted = 1;
            /* The default must obey the rules a given name obeys, or
             * --print-config would write a file that --config refuses. */
            char why[256];
            if (check_node_name(&nodes[i], why, sizeof why)) {
                snprintf(key, sizeof key, "nodes[%zu].name", i);
                return fail(err, errlen, key, src,
                            "%s; it defaults to host:port, give the node a name", why);
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(nodes[i].base_url, nodes[j].base_url) == 0) {
                snprintf(key, sizeof key, "nodes[%zu].url", i);
                return fail(err, errlen, key, src, "'%s' is the same node as nodes[%zu]",
                            nodes[i].base_url, j);
            }
            if (strcmp(nodes[i].name, nodes[j].name) == 0) {
                snprintf(key, sizeof key, "nodes[%zu].name", i);
                return fail(err, errlen, key, src, "duplicate node name '%s' (also nodes[%zu])%s",
                            nodes[i].name, j,
                            defaulted ? "; it defaults to host:port, give the node a name" : "");
            }
        }
    }
    return 0;
}

/* Parses a JSON "nodes" array into a new list. */
static int nodes_from_json(const cJSON *arr, const struct src *src, struct sol_node_conf **out,
                           size_t *n_out, char *err, size_t errlen)
{
    char why[512], key[MAX_KEY];
    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "nodes", src, "expected an array of node objects, got %s",
                    json_type_name(arr));
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct sol_node_conf *nodes = n ? calloc(n, sizeof *nodes) : NULL;
    if (n && !nodes)
        return fail(err, errlen, NULL, src, "out of memory");
    size_t i = 0;
    int rc = 0;
    for (const cJSON *it = arr->child; it && !rc; it = it->next, i++) {
        snprintf(key, sizeof key, "nodes[%zu]", i);
        if (node_defaults(&nodes[i], why, sizeof why))
            rc = fail(err, errlen, key, src, "%s", why);
        else if (cJSON_IsString(it))
            rc = node_from_spec(&nodes[i], it->valuestring, i, src, err, errlen);
        else if (cJSON_IsObject(it))
            rc = node_from_object(&nodes[i], it, i, src, err, errlen);
        else
            rc = fail(err, errlen, key, src, "expected an object (or a URL string), got %s",
                      json_type_name(it));
    }
    if (!rc)
        rc = finish_nodes(nodes, n, src, err, errlen);
    if (rc) {
        nodes_free(nodes, n);
        return -1;
    }
    *out = nodes;
    *n_out = n;
    return 0;
}

/* Parses specs ("URL" or "NAME=URL") into a new list. */
static int nodes_from_specs(const char *const *specs, size_t n, const struct src *src,
                            struct sol_node_conf **out, size_t *n_out, char *err, size_t errlen)
{
    char why[512], key[MAX_KEY];
    struct sol_node_conf *nodes = calloc(n ? n : 1, sizeof *nodes);
    if (!nodes)
        return fail(err, errlen, NULL, src, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        snprintf(key, sizeof key, "nodes[%zu]", i);
        if (node_defaults(&nodes[i], why, sizeof why))
            rc = fail(err, errlen, key, src, "%s", why);
        else
            rc = node_from_spec(&nodes[i], specs[i], i, src, err, errlen);
    }
    if (!rc)
        rc = finish_nodes(nodes, n, src, err, errlen);
    if (rc) {
        nodes_free(nodes, n);
        return -1;
    }
    *out = nodes;
    *n_out = n;
    return 0;
}

static void replace_nodes(struct sol_config *cfg, struct sol_node_conf *nodes, size_t n)
{
    nodes_free(cfg->nodes, cfg->n_nodes);
    cfg->nodes = nodes;
    cfg->n_nodes = n;
}

/* SOLLOL_NODES: comma-separated specs; empty items are skipped. Returns 1
 * when the variable held no node at all (treated as unset). */
static int nodes_from_env(struct sol_config *cfg, const char *value, const struct src *src,
                          char *err, size_t errlen)
{
    char *copy = strdup(value);
    size_t cap = 1;
    for (const char *p = value; *p; p++)
        cap += *p == ',';
    const char **specs = calloc(cap, sizeof *specs);
    if (!copy || !specs) {
        free(copy);
        free(specs);
        return fail(err, errlen, NULL, src, "out of memory");
    }
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        const char *b = tok, *e = tok + strlen(tok);
        trim_range(&b, &e);
        if (b < e)
            specs[n++] = tok;
    }
    int rc = 1;
    if (n) {
        struct sol_node_conf *nodes = NULL;
        size_t count = 0;
        rc = nodes_from_specs(specs, n, src, &nodes, &count, err, errlen);
        if (rc == 0)
            replace_nodes(cfg, nodes, count);
    }
    free(specs);
    free(copy);
    return rc;
}

int sol_config_add_node(struct sol_config *cfg, const char *name, const char *url, char *err,
                        size_t errlen)
{
    char why[512], key[MAX_KEY];
    size_t i = cfg->n_nodes;
    struct sol_node_conf *grown = realloc(cfg->nodes, (i + 1) * sizeof *grown);
    if (!grown)
        return fail(err, errlen, NULL, NULL, "out of memory");
    cfg->nodes = grown; /* n_nodes is only raised on success */
    struct sol_node_conf *n = &grown[i];
    memset(n, 0, sizeof *n);
    int rc = 0;
    snprintf(key, sizeof key, "nodes[%zu]", i);
    if (node_defaults(n, why, sizeof why))
        rc = fail(err, errlen, key, NULL, "%s", why);
    snprintf(key, sizeof key, "nodes[%zu].url", i);
    if (!rc && set_text(n, find_node_key("url"), url ? url : "", why, sizeof why))
        rc = fail(err, errlen, key, NULL, "%s", why);
    snprintf(key, sizeof key, "nodes[%zu].name", i);
    if (!rc && name && set_text(n, find_node_key("name"), name, why, sizeof why))
        rc = fail(err, errlen, key, NULL, "%s", why);
    /* The earlier nodes passed already; this checks the new one against them. */
    if (!rc)
        rc = finish_nodes(grown, i + 1, NULL, err, errlen);
    if (rc) {
        node_free(n);
        return -1;
    }
    cfg->n_nodes = i + 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Whole configs: free, copy, defaults                                 */
/* ------------------------------------------------------------------ */

void sol_config_free(struct sol_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < sol_config_n_keys; i++)
        if (owns_text(&sol_config_keys[i]))
            free(*(char **)field_at(cfg, &sol_config_keys[i]));
    free(cfg->listen_host);
    nodes_free(cfg->nodes, cfg->n_nodes);
    memset(cfg, 0, sizeof *cfg);
}

static int dup_field(char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static int node_copy(struct sol_node_conf *dst, const struct sol_node_conf *src)
{
    *dst = *src;
    /* Own nothing yet, so a failure half-way can simply free dst. */
    for (size_t i = 0; i < sol_config_n_node_keys; i++)
        if (sol_config_node_keys[i].type == SOL_CONF_STRING)
            *(char **)field_at(dst, &sol_config_node_keys[i]) = NULL;
    dst->scheme = dst->host = dst->path_prefix = dst->base_url = dst->host_header = NULL;
    dst->header_lines = NULL;
    dst->n_headers = 0;
    int rc = 0;
    for (size_t i = 0; i < sol_config_n_node_keys; i++) {
        const struct sol_config_key *k = &sol_config_node_keys[i];
        if (k->type == SOL_CONF_STRING)
            rc |= dup_field(field_at(dst, k), *(char *const *)cfield_at(src, k));
    }
    rc |= dup_field(&dst->scheme, src->scheme);
    rc |= dup_field(&dst->host, src->host);
    rc |= dup_field(&dst->path_prefix, src->path_prefix);
    rc |= dup_field(&dst->base_url, src->base_url);
    rc |= dup_field(&dst->host_header, src->host_header);
    if (src->header_lines) {
        dst->header_lines = calloc(src->n_headers + 1, sizeof *dst->header_lines);
        if (!dst->header_lines)
            rc = -1;
        for (size_t i = 0; dst->header_lines && i < src->n_headers; i++) {
            rc |= dup_field(&dst->header_lines[i], src->header_lines[i]);
            dst->n_headers = i + 1;
        }
    }
    if (rc)
        node_free(dst);
    return rc ? -1 : 0;
}

/* Deep copy. The owned fields are the STRING rows, listen_host and the
 * nodes; a new key type that owns memory must be handled here and in
 * sol_config_free. */
static int config_copy(struct sol_config *dst, const struct sol_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < sol_config_n_keys; i++)
        if (owns_text(&sol_config_keys[i]))
            *(char **)field_at(dst, &sol_config_keys[i]) = NULL;
    dst->listen_host = NULL;
    dst->nodes = NULL;
    dst->n_nodes = 0;
    int rc = 0;
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (owns_text(k))
            rc |= dup_field(field_at(dst, k), *(char *const *)cfield_at(src, k));
    }
    rc |= dup_field(&dst->listen_host, src->listen_host);
    if (!rc && src->n_nodes) {
        dst->nodes = calloc(src->n_nodes, sizeof *dst->nodes);
        for (size_t i = 0; dst->nodes && !rc && i < src->n_nodes; i++) {
            rc = node_copy(&dst->nodes[i], &src->nodes[i]);
            if (!rc)
                dst->n_nodes = i + 1;
        }
        if (!dst->nodes)
            rc = -1;
    }
    if (rc)
        sol_config_free(dst);
    return rc ? -1 : 0;
}

static int has_prefix(const char *key, const char *const *prefixes)
{
    for (; *prefixes; prefixes++)
        if (strncmp(key, *prefixes, strlen(*prefixes)) == 0)
            return 1;
    return 0;
}

static size_t field_size(const struct sol_config_key *k)
{
    switch (k->type) {
    case SOL_CONF_SIZE:
        return sizeof(unsigned long long);
    case SOL_CONF_DOUBLE:
        return sizeof(double);
    case SOL_CONF_DURATION_MS:
        return sizeof(unsigned);
    default:
        return sizeof(int);
    }
}

int sol_config_keep_keys(struct sol_config *next, const struct sol_config *cur,
                         const char *const *prefixes, void (*changed)(const char *key))
{
    int n = 0;
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (!k->key || k->type == SOL_CONF_HEADERS || !has_prefix(k->key, prefixes))
            continue;
        if (owns_text(k)) {
            char **dst = field_at(next, k);
            const char *src = *(char *const *)cfield_at(cur, k);
            if (!(*dst && src && strcmp(*dst, src) == 0) && (*dst || src)) {
                n++;
                if (changed)
                    changed(k->key);
            }
            char *copy = NULL;
            if (dup_field(&copy, src) < 0)
                return -1;
            free(*dst);
            *dst = copy;
        } else {
            if (memcmp(field_at(next, k), cfield_at(cur, k), field_size(k)) != 0) {
                n++;
                if (changed)
                    changed(k->key);
            }
            memcpy(field_at(next, k), cfield_at(cur, k), field_size(k));
        }
    }
    return n;
}

int sol_config_defaults(struct sol_config *cfg, char *err, size_t errlen)
{
    static const struct src dflt = {"built-in default", NULL};
    char why[512];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (k->key && k->def && set_text(cfg, k, k->def, why, sizeof why)) {
            sol_config_free(cfg);
            return fail(err, errlen, k->key, &dflt, "%s", why);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The JSON file                                                       */
/* ------------------------------------------------------------------ */

static const struct sol_config_key *find_key(const char *key)
{
    for (size_t i = 0; i < sol_config_n_keys; i++)
        if (sol_config_keys[i].key && strcmp(sol_config_keys[i].key, key) == 0)
            return &sol_config_keys[i];
    return NULL;
}

/* Nonzero when some key is nested under `prefix` ("timeouts"). */
static int is_key_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const char *k = sol_config_keys[i].key;
        if (k && strncmp(k, prefix, n) == 0 && k[n] == '.')
            return 1;
    }
    return 0;
}

static int apply_object(struct sol_config *cfg, const cJSON *obj, const char *prefix,
                        const struct src *src, unsigned char *touched, char *err, size_t errlen)
{
    char key[MAX_KEY], why[512], show[80], hint[96];
    for (const cJSON *it = obj->child; it; it = it->next) {
        int len = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        /* A key that does not fit, or that is itself dotted ("timeouts.idle_ms"
         * at the top level), is unknown: nesting is spelled with objects. */
        int plain = len < (int)sizeof key && !strchr(it->string, '.');
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (strcmp(p->string, it->string) == 0)
                return fail(err, errlen, shown(key, show, sizeof show), src, "key is given twice");
        const struct sol_config_key *k = plain ? find_key(key) : NULL;
        if (k && k->type == SOL_CONF_NODES) {
            struct sol_node_conf *nodes = NULL;
            size_t n = 0;
            if (nodes_from_json(it, src, &nodes, &n, err, errlen))
                return -1;
            replace_nodes(cfg, nodes, n);
        } else if (k) {
            if (set_json(cfg, k, it, why, sizeof why))
                return fail(err, errlen, key, src, "%s", why);
        } else if (plain && is_key_prefix(key)) {
            if (!cJSON_IsObject(it))
                return fail(err, errlen, key, src, "expected an object, got %s",
                            json_type_name(it));
            if (apply_object(cfg, it, key, src, touched, err, errlen))
                return -1;
            continue;
        } else {
            if (strchr(it->string, '.'))
                snprintf(hint, sizeof hint,
                         " (nested keys are written as objects: "
                         "{\"a\": {\"b\": ...}})");
            else
                suggest(key, sol_config_keys, sol_config_n_keys, hint, sizeof hint);
            return fail(err, errlen, NULL, src, "unknown key '%s'%s", shown(key, show, sizeof show),
                        hint);
        }
        if (touched)
            touched[k - sol_config_keys] = 1;
    }
    return 0;
}

static int read_file(const char *path, char **out, size_t *len, const struct src *src, char *err,
                     size_t errlen)
{
    /* Reloads run on the loop: a FIFO (or a device) would block open()
     * and read(). O_NONBLOCK keeps open() from waiting for a writer, and
     * only a regular file is read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(err, errlen, NULL, src, "cannot open config file '%s': %s", path,
                    strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        return fail(err, errlen, NULL, src, "cannot stat config file '%s': %s", path,
                    strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, NULL, src,
                    "config file '%s' is not a regular file (a FIFO, device or directory is "
                    "never read)",
                    path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return fail(err, errlen, NULL, src, "out of memory");
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int too_big = 0;
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 < cap)
            continue;
        if (cap >= MAX_FILE_BYTES) {
            too_big = 1;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (too_big) {
        free(buf);
        fclose(f);
        return fail(err, errlen, NULL, src, "config file '%s' is larger than %u bytes", path,
                    MAX_FILE_BYTES);
    }
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (!buf)
        return fail(err, errlen, NULL, src, "out of memory");
    if (bad) {
        free(buf);
        return fail(err, errlen, NULL, src, "cannot read config file '%s': %s", path,
                    strerror(saved));
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Applies the file to cfg (not transactional: callers work on a copy). */
static int apply_file(struct sol_config *cfg, const char *path, const struct src *via,
                      unsigned char *touched, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (read_file(path, &text, &len, via, err, errlen))
        return -1;
    const struct src src = {"file", path};
    if (strlen(text) != len) {
        free(text);
        return fail(err, errlen, NULL, &src, "the file contains a NUL byte");
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        if (!at || at < text || at > text + len)
            at = text + len;
        int line = 1, col = 1;
        for (const char *p = text; p < at; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        char near[32], show[40];
        snprintf(near, sizeof near, "%.*s",
                 (int)strcspn(at, "\r\n") < 20 ? (int)strcspn(at, "\r\n") : 20, at);
        /* cJSON points at the last byte when the text ends too early. */
        const char *rest = at;
        while (*rest && isspace((unsigned char)*rest))
            rest++;
        int rc;
        if (*rest)
            rc = fail(err, errlen, NULL, &src, "JSON syntax error at line %d, column %d near '%s'",
                      line, col, shown(near, show, sizeof show));
        else
            rc =
                fail(err, errlen, NULL, &src,
                     "JSON syntax error at line %d, column %d (unexpected end of file)", line, col);
        free(text);
        return rc;
    }
    free(text);
    int rc;
    if (!cJSON_IsObject(root))
        rc = fail(err, errlen, NULL, &src, "the top level must be a JSON object, got %s",
                  json_type_name(root));
    else
        rc = apply_object(cfg, root, "", &src, touched, err, errlen);
    cJSON_Delete(root);
    return rc;
}

int sol_config_load_file(struct sol_config *cfg, const char *path, char *err, size_t errlen)
{
    struct sol_config tmp;
    if (config_copy(&tmp, cfg))
        return fail(err, errlen, NULL, NULL, "out of memory");
    char *p = strdup(path);
    if (!p) {
        sol_config_free(&tmp);
        return fail(err, errlen, NULL, NULL, "out of memory");
    }
    free(tmp.config_path);
    tmp.config_path = p;
    if (apply_file(&tmp, path, NULL, NULL, err, errlen)) {
        sol_config_free(&tmp);
        return -1;
    }
    sol_config_free(cfg);
    *cfg = tmp;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output: --print-config, --help                                      */
/* ------------------------------------------------------------------ */

static int is_secret_header(const char *line)
{
    static const char *const exact[] = {"authorization", "proxy-authorization", "cookie"};
    static const char *const parts[] = {"token", "secret", "key", "password"};
    const char *colon = strchr(line, ':');
    size_t n = colon ? (size_t)(colon - line) : strlen(line);
    char name[128];
    if (n >= sizeof name)
        return 1;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)tolower((unsigned char)line[i]);
    name[n] = '\0';
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strstr(name, parts[i]))
            return 1;
    return 0;
}

/* Adds the value of field k of obj to parent under `name`. */
static cJSON *value_json(const void *obj, const struct sol_config_key *k)
{
    const void *f = cfield_at(obj, k);
    switch (k->type) {
    case SOL_CONF_STRING: {
        const char *s = *(char *const *)f;
        if (s && *s && (k->flags & SOL_CK_SECRET))
            s = "<redacted>";
        return s ? cJSON_CreateString(s) : cJSON_CreateNull();
    }
    case SOL_CONF_INT:
        return cJSON_CreateNumber(*(const int *)f);
    case SOL_CONF_BOOL:
        return cJSON_CreateBool(*(const int *)f);
    case SOL_CONF_DURATION_MS:
        return cJSON_CreateNumber(*(const unsigned *)f);
    case SOL_CONF_SIZE:
        return cJSON_CreateNumber((double)*(const unsigned long long *)f);
    case SOL_CONF_ENUM:
        return cJSON_CreateString(k->choices[*(const int *)f]);
    case SOL_CONF_DOUBLE:
        return cJSON_CreateNumber(*(const double *)f);
    case SOL_CONF_JSON: {
        const char *text = *(char *const *)f;
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (j && (cJSON_IsArray(j) || cJSON_IsObject(j)))
            return j;
        cJSON_Delete(j);
        return text ? cJSON_CreateString(text) : cJSON_CreateNull();
    }
    case SOL_CONF_HEADERS: {
        const struct sol_node_conf *n = obj;
        cJSON *h = cJSON_CreateObject();
        for (size_t i = 0; h && i < n->n_headers; i++) {
            const char *line = n->header_lines[i], *colon = strchr(line, ':');
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(colon - line), line);
            const char *v = is_secret_header(line) ? "<redacted>" : colon + 2;
            if (!cJSON_AddStringToObject(h, name, v)) {
                cJSON_Delete(h);
                return NULL;
            }
        }
        return h;
    }
    case SOL_CONF_NODES: {
        const struct sol_config *cfg = obj;
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < cfg->n_nodes; i++) {
            const struct sol_node_conf *n = &cfg->nodes[i];
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                cJSON_Delete(arr);
                return NULL;
            }
            for (size_t j = 0; j < sol_config_n_node_keys; j++) {
                const struct sol_config_key *nk = &sol_config_node_keys[j];
                cJSON *v = strcmp(nk->key, "url") == 0 ? cJSON_CreateString(n->base_url)
                                                       : value_json(n, nk);
                if (!v || !cJSON_AddItemToObject(o, nk->key, v)) {
                    cJSON_Delete(v);
                    cJSON_Delete(arr);
                    return NULL;
                }
            }
        }
        return arr;
    }
    default:
        return NULL;
    }
}

char *sol_config_to_json(const struct sol_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (!k->key)
            continue;
        /* Walk/create the nested objects of a dotted key. */
        cJSON *parent = root;
        char path[MAX_KEY];
        snprintf(path, sizeof path, "%s", k->key);
        char *seg = path, *dot;
        while (parent && (dot = strchr(seg, '.'))) {
            *dot = '\0';
            cJSON *child = cJSON_GetObjectItemCaseSensitive(parent, seg);
            if (!child)
                child = cJSON_AddObjectToObject(parent, seg);
            parent = child;
            seg = dot + 1;
        }
        cJSON *v = parent ? value_json(cfg, k) : NULL;
        if (!v || !cJSON_AddItemToObject(parent, seg, v)) {
            cJSON_Delete(v);
            cJSON_Delete(root);
            return NULL;
        }
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

/* snprintf at *used in buf; *used keeps counting past the end, harmlessly. */
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + (*used < size ? *used : size - 1), *used < size ? size - *used : 1, fmt,
                      ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n;
}

static void print_help(FILE *out, const char *prog)
{
    fprintf(out,
            "Usage: %s [OPTIONS]\n"
            "\n"
            "Puts many Ollama nodes behind one Ollama-compatible address.\n"
            "\n"
            "Options (precedence: flags > environment > config file > built-in defaults):\n",
            prog);
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (!k->flag)
            continue;
        char meta[128] = "";
        if (k->type == SOL_CONF_BOOL) {
            snprintf(meta, sizeof meta, "[=true|false]");
        } else if (k->type == SOL_CONF_ENUM) {
            meta[0] = ' ';
            for (int j = 0; k->choices[j]; j++) {
                size_t used = strlen(meta);
                snprintf(meta + used, sizeof meta - used, "%s%s", j ? "|" : "", k->choices[j]);
            }
        } else if (k->type != SOL_CONF_ACTION) {
            snprintf(meta, sizeof meta, " %s", k->metavar ? k->metavar : "VALUE");
        }
        fprintf(out, "  --%s%s\n      %s\n", k->flag, meta, k->doc);
        char more[256] = "";
        size_t used = 0;
        if (k->flags & SOL_CK_REPEAT)
            append(more, sizeof more, &used, "%srepeatable", used ? ", " : "");
        if (k->def && *k->def)
            append(more, sizeof more, &used, "%sdefault %s", used ? ", " : "", k->def);
        if (k->type == SOL_CONF_INT)
            append(more, sizeof more, &used, "%srange %.15g..%.15g", used ? ", " : "", k->min,
                   k->max);
        if (k->env)
            append(more, sizeof more, &used, "%senv %s", used ? ", " : "", k->env);
        if (k->env_fallback)
            append(more, sizeof more, &used, " (fallback %s)", k->env_fallback);
        if (used)
            fprintf(out, "      (%s)\n", more);
    }
    fprintf(out, "\n"
                 "Flags take '--flag value' or '--flag=value'. Durations: integer milliseconds or\n"
                 "1500ms, 5s, 2m, 1h30m. Sizes: bytes or 512KiB, 64MiB, 1GiB (1024-based), 1GB\n"
                 "(1000-based). Node URLs follow OLLAMA_HOST rules: 10.0.0.5 means\n"
                 "http://10.0.0.5:11434. Per-node settings (max_concurrent, weight, headers)\n"
                 "are set in the config file. See docs/configuration.md.\n");
}

/* ------------------------------------------------------------------ */
/* The entry point                                                     */
/* ------------------------------------------------------------------ */

struct cli_item {
    const struct sol_config_key *k;
    const char *value;
    char flag[64]; /* "--name" for messages */
};

enum { ACT_HELP = 1, ACT_VERSION = 2, ACT_CHECK = 4, ACT_PRINT = 8 };

static int parse_cli(int argc, char **argv, struct cli_item *items, size_t *n_items, int *actions,
                     char *err, size_t errlen)
{
    char show[80];
    *n_items = 0;
    *actions = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) {
            *actions |= ACT_HELP;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return fail(err, errlen, NULL, NULL, "unexpected argument '%s' (see --help)",
                        shown(arg, show, sizeof show));
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct sol_config_key *k = NULL;
        for (size_t j = 0; j < sol_config_n_keys && !k; j++) {
            const char *f = sol_config_keys[j].flag;
            if (f && strlen(f) == nlen && strncmp(f, name, nlen) == 0)
                k = &sol_config_keys[j];
        }
        if (!k) {
            char raw[80];
            snprintf(raw, sizeof raw, "--%.*s", (int)(nlen < 60 ? nlen : 60), name);
            return fail(err, errlen, NULL, NULL, "unknown flag '%s' (see --help)",
                        shown(raw, show, sizeof show));
        }
        struct cli_item *it = &items[*n_items];
        it->k = k;
        snprintf(it->flag, sizeof it->flag, "--%s", k->flag);
        if (k->type == SOL_CONF_ACTION) {
            if (eq)
                return fail(err, errlen, NULL, NULL, "flag %s does not take a value", it->flag);
            *actions |= strcmp(k->flag, "help") == 0           ? ACT_HELP
                        : strcmp(k->flag, "version") == 0      ? ACT_VERSION
                        : strcmp(k->flag, "check-config") == 0 ? ACT_CHECK
                                                               : ACT_PRINT;
            continue;
        }
        if (eq) {
            it->value = eq + 1;
        } else if (k->type == SOL_CONF_BOOL) {
            it->value = "true"; /* "--demo"; "--demo false" would be ambiguous */
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            it->value = argv[++i];
        } else {
            return fail(err, errlen, NULL, NULL, "flag %s needs a value (%s %s or %s=%s)", it->flag,
                        it->flag, k->metavar ? k->metavar : "VALUE", it->flag,
                        k->metavar ? k->metavar : "VALUE");
        }
        (*n_items)++;
    }
    return 0;
}

/* Everything after the command line is parsed; cfg is zeroed on entry. */
static int build(struct sol_config *cfg, const struct cli_item *items, size_t n_items, char **envp,
                 char *err, size_t errlen)
{
    char why[512];
    unsigned char touched[sizeof sol_config_keys / sizeof sol_config_keys[0]] = {0};

    if (sol_config_defaults(cfg, err, errlen))
        return -1;

    /* The file: --config beats SOLLOL_CONFIG. */
    const struct sol_config_key *ck = NULL;
    for (size_t i = 0; i < sol_config_n_keys; i++)
        if (sol_config_keys[i].flags & SOL_CK_META)
            ck = &sol_config_keys[i];
    if (!ck)
        return fail(err, errlen, NULL, NULL, "internal error: no --config row in the key table");
    struct src via = {"env", ck->env};
    const char *path = env_value(envp, ck->env);
    for (size_t i = 0; i < n_items; i++)
        if (items[i].k == ck) {
            path = items[i].value;
            via = (struct src){"flag", items[i].flag};
        }
    if (path) {
        if (!*path)
            return fail(err, errlen, NULL, &via, "empty config file path");
        if (store_string(cfg, ck, path, why, sizeof why))
            return fail(err, errlen, NULL, &via, "%s", why);
        if (apply_file(cfg, path, &via, touched, err, errlen))
            return -1;
    }

    /* The environment. */
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        const char *v = k->key ? env_value(envp, k->env) : NULL;
        if (!v)
            continue;
        const struct src src = {"env", k->env};
        if (k->type == SOL_CONF_NODES) {
            int rc = nodes_from_env(cfg, v, &src, err, errlen);
            if (rc < 0)
                return -1;
            if (rc > 0)
                continue;
        } else if (set_text(cfg, k, v, why, sizeof why)) {
            return fail(err, errlen, k->key, &src, "%s", why);
        }
        touched[i] = 1;
    }

    /* The flags, in order: a later scalar flag wins; --node accumulates. */
    const char **specs = calloc(n_items + 1, sizeof *specs);
    if (!specs)
        return fail(err, errlen, NULL, NULL, "out of memory");
    size_t n_specs = 0;
    const struct sol_config_key *node_key = NULL;
    for (size_t i = 0; i < n_items; i++) {
        const struct sol_config_key *k = items[i].k;
        const struct src src = {"flag", items[i].flag};
        if (!k->key)
            continue; /* --config: done above */
        if (k->type == SOL_CONF_NODES) {
            specs[n_specs++] = items[i].value;
            node_key = k;
        } else if (set_text(cfg, k, items[i].value, why, sizeof why)) {
            free(specs);
            return fail(err, errlen, k->key, &src, "%s", why);
        }
        touched[k - sol_config_keys] = 1;
    }
    if (n_specs) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", node_key->flag);
        const struct src src = {"flag", flag};
        struct sol_node_conf *nodes = NULL;
        size_t n = 0;
        int rc = nodes_from_specs(specs, n_specs, &src, &nodes, &n, err, errlen);
        if (rc == 0)
            replace_nodes(cfg, nodes, n);
        free(specs);
        if (rc)
            return -1;
    } else {
        free(specs);
    }

    /* Fallback variables (OLLAMA_HOST) only when nothing else set the key,
     * so a stray or invalid one cannot break an explicit configuration. */
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        const char *v = k->key && !touched[i] ? env_value(envp, k->env_fallback) : NULL;
        const struct src src = {"env", k->env_fallback};
        if (v && set_text(cfg, k, v, why, sizeof why))
            return fail(err, errlen, k->key, &src, "%s", why);
    }

    /* Discovery may be the only source of nodes (they join once found). */
    int discovering =
        cfg->discovery_cidrs && strspn(cfg->discovery_cidrs, " ,") < strlen(cfg->discovery_cidrs);
    if (cfg->n_nodes == 0 && !cfg->demo && !discovering)
        return fail(
            err, errlen, "nodes", NULL,
            "no nodes configured (use --node URL, SOLLOL_NODES=URL[,URL...], \"nodes\" in "
            "the config file, or --demo for simulated nodes; or discovery.cidrs to find them)");
    return 0;
}

int sol_config_from_args(struct sol_config *cfg, int argc, char **argv, char **envp,
                         enum sol_config_action *action, FILE *out, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    *action = SOL_CONFIG_RUN;
    if (!out)
        out = stdout;
    if (errlen)
        err[0] = '\0';

    struct cli_item *items = calloc((size_t)(argc > 0 ? argc : 1), sizeof *items);
    if (!items)
        return fail(err, errlen, NULL, NULL, "out of memory");
    size_t n_items;
    int actions;
    if (parse_cli(argc, argv, items, &n_items, &actions, err, errlen)) {
        free(items);
        return -1;
    }
    if (actions & (ACT_HELP | ACT_VERSION)) {
        const char *prog = argc > 0 && argv[0] ? argv[0] : "sollold";
        const char *slash = strrchr(prog, '/');
        prog = slash ? slash + 1 : prog;
        if (actions & ACT_HELP)
            print_help(out, prog);
        else
            fprintf(out, "%s %s\n", prog, SOLLOL_VERSION);
        free(items);
        *action = SOL_CONFIG_EXIT_OK;
        return 0;
    }

    int rc = build(cfg, items, n_items, envp, err, errlen);
    free(items);
    if (rc) {
        sol_config_free(cfg);
        return -1;
    }

    if (actions & ACT_PRINT) {
        char *json = sol_config_to_json(cfg);
        if (!json) {
            sol_config_free(cfg);
            return fail(err, errlen, NULL, NULL, "out of memory");
        }
        fprintf(out, "%s\n", json);
        free(json);
        *action = SOL_CONFIG_EXIT_OK;
    } else if (actions & ACT_CHECK) {
        int v6 = strchr(cfg->listen_host, ':') != NULL;
        struct sol_discovery_targets dt = {0};
        char disc[64] = "";
        if (sol_discovery_parse(cfg->discovery_cidrs, cfg->discovery_port, &dt, disc,
                                sizeof disc) == 0 &&
            dt.hosts)
            snprintf(disc, sizeof disc, ", discovery over %u address%s", dt.hosts,
                     dt.hosts == 1 ? "" : "es");
        else
            disc[0] = '\0';
        sol_discovery_targets_free(&dt);
        fprintf(out, "configuration OK: listen %s%s%s:%d, %zu node%s%s%s%s%s\n", v6 ? "[" : "",
                *cfg->listen_host ? cfg->listen_host : "*", v6 ? "]" : "", cfg->listen_port,
                cfg->n_nodes, cfg->n_nodes == 1 ? "" : "s", disc, cfg->demo ? ", demo mode" : "",
                cfg->config_path ? ", file " : "", cfg->config_path ? cfg->config_path : "");
        *action = SOL_CONFIG_EXIT_OK;
    }
    return 0;
}
