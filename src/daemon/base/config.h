/*
 * config.h - sollold's configuration: built-in defaults, a JSON file, the
 * environment and command-line flags, merged in that order of increasing
 * precedence:
 *
 *     flags  >  environment  >  JSON file (--config / SOLLOL_CONFIG)  >  defaults
 *
 * Everything is driven by one table (sol_config_keys[] below): a row names
 * the JSON key, the environment variable, the long flag, the type, the
 * default, the bounds and a one-line doc, plus the offset of the struct
 * field it fills. The parser, --help, --print-config and the unit test
 * that keeps docs/configuration.md and conf/sollol.json complete all walk
 * that table, so adding a key is one table row in config.c plus one struct
 * field here (plus its docs row and example entry, which the test enforces).
 *
 * Error convention: every function that can fail returns 0 on success and
 * -1 on error, with a one-line, NUL-terminated message in the caller's
 * buffer `err` (of `errlen` bytes; may be truncated, never overflowed).
 * Configuration errors always name the key, the source (file path, env
 * variable or flag) and what is wrong, e.g.
 *
 *     config: nodes[1].url: invalid port '99999' (file /etc/sollol/sollol.json)
 *
 * Not thread-safe in any interesting way: a struct sol_config is built once
 * (or rebuilt on reload) and then only read.
 */
#ifndef SOLLOL_CONFIG_H
#define SOLLOL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

/* Ollama's default port: used for addresses without a scheme or a port. */
#define SOL_OLLAMA_DEFAULT_PORT 11434

/*
 * One upstream Ollama node. Every string is owned by the struct (freed by
 * sol_config_free) and never NULL once the config has loaded successfully.
 */
struct sol_node_conf {
    char *name;          /* unique among nodes; defaults to host_header */
    char *url;           /* as given by the user (trimmed) */
    char *scheme;        /* "http" or "https" */
    char *host;          /* without brackets; IPv6 normalized ("::1"); never empty */
    int port;            /* 0..65535 */
    char *path_prefix;   /* "" or "/prefix" (no trailing slash) */
    char *base_url;      /* "http://[::1]:11434/prefix": prepend to "/api/..." */
    char *host_header;   /* "host:port", brackets for IPv6: send as Host: */
    int max_concurrent;  /* requests in flight to this node at most */
    double weight;       /* relative share of traffic, > 0 */
    char **header_lines; /* "Name: value" per extra header, NULL-terminated; NULL if none */
    size_t n_headers;    /* entries in header_lines before the NULL */
};

/*
 * The effective configuration. Zero-initialized is "empty"; a struct filled
 * by sol_config_from_args() or sol_config_defaults() must be released with
 * sol_config_free().
 */
struct sol_config {
    char *config_path; /* JSON file that was read, or NULL when none */

    char *listen;      /* as given, e.g. "0.0.0.0:11434" */
    char *listen_host; /* "" = all interfaces (what sol_listen_socket expects) */
    int listen_port;   /* 0 = an ephemeral port (tests) */

    struct sol_node_conf *nodes; /* may be empty only when demo is set */
    size_t n_nodes;

    unsigned long long max_body_bytes; /* largest request body accepted */

    unsigned connect_timeout_ms;    /* TCP/TLS connect to a node */
    unsigned first_byte_timeout_ms; /* request sent -> first response byte */
    unsigned idle_timeout_ms;       /* longest gap between response chunks */

    int routing_mode;           /* enum sol_routing_mode */
    int wait_for_faster;        /* cost mode: queued requests may wait for a busy node */
    int max_attempts;           /* nodes tried per request before its first byte */
    unsigned retry_deadline_ms; /* no new attempt after this long */
    int continue_streams;       /* a chat broken mid-stream goes on on another node (cont.h) */
    unsigned long long continue_max_bytes; /* text kept per stream to continue it */

    int queue_max_length;       /* requests waiting for a slot at most */
    unsigned queue_max_wait_ms; /* longest wait for a slot */
    unsigned queue_aging_ms;    /* wait that raises priority by one level */
    int affinity_capacity;      /* remembered conversations; 0 = off */
    int embed_split_min_inputs; /* /api/embed batches this large are split; 0 = never */

    unsigned probe_interval_ms; /* liveness probe period per node */
    unsigned tags_interval_ms;  /* /api/tags period per node */
    int max_models_per_node;    /* model entries kept per node (health.h) */
    unsigned probe_timeout_ms;

    int breaker_failure_threshold;
    double breaker_error_rate;
    int breaker_min_requests;
    unsigned breaker_window_ms;
    unsigned breaker_cooldown_min_ms;
    unsigned breaker_cooldown_max_ms;

    double default_gen_tps;
    double default_prompt_tps;
    unsigned default_load_ms;
    int typical_predict;
    double affinity_prompt_fraction;

    unsigned shutdown_grace_ms; /* SIGTERM: time in-flight requests get to finish */

    char *discovery_cidrs;          /* "CIDR[:PORT],..." ("" = no discovery) */
    int discovery_port;             /* port for ranges that name none */
    unsigned discovery_interval_ms; /* between scans */
    unsigned discovery_timeout_ms;  /* per scanned address */
    int discovery_concurrency;      /* addresses probed at once */
    int discovery_max_missed;       /* missed scans before a found node leaves */
    /* Access control (auth.h): JSON texts, parsed by sol_auth_init(). */
    char *auth_keys;      /* JSON array of key objects ("[]" = none) */
    char *auth_keys_file; /* "" = none; plain keys allowed there */
    char *auth_public;    /* JSON array of paths open without a key */
    char *cors_origins;   /* origins allowed besides Ollama's defaults ("a,b"; compat.h) */

    /* Limits on what clients may send and hold (docs/security.md). */
    unsigned long long max_url_bytes;        /* request target: 414 beyond */
    unsigned long long max_header_bytes;     /* header fields together: 431 beyond */
    int max_connections;                     /* client connections at once */
    int max_connections_per_client;          /* per client address; 0 = no limit */
    unsigned header_timeout_ms;              /* headers of one request must arrive in this time */
    unsigned client_idle_timeout_ms;         /* silent client connections are closed */
    int max_upstream_transfers;              /* proxied requests in flight to all nodes */
    int json_max_depth;                      /* nesting of request bodies: 400 beyond */
    unsigned long long max_body_total_bytes; /* bodies held, all clients: 503 beyond; 0 = off */
    unsigned long long max_body_bytes_per_client; /* bodies held, one address; 0 = off */
    unsigned long long min_body_bytes_per_s;      /* slower bodies are cut; 0 = off */
    unsigned body_grace_ms;                       /* before the minimum rate applies */
    char *auth_failures_per_client;               /* "N/m" failed keys per address; "" = off */

    int log_level;       /* enum sol_log_level (sollol/log.h) */
    int log_format_json; /* 0 = text lines, 1 = one JSON object per line */

    int demo;       /* start demo_nodes simulated nodes (ollama-sim) */
    int demo_nodes; /* 1..8 */
    char *sim_path; /* ollama-sim binary; "" = auto (next to sollold) */

    /* The sharded path (coordinator.c; docs/distributed-inference.md). JSON
     * rows hold JSON text or, from env/flags, plain text ("h:p,h:p"). */
    int model_sharding_enabled;
    char *rpc_backends;      /* [{"host","port"}] or ["h:p"], or "h:p,h:p" */
    char *rpc_backends_file; /* rpc_backends.conf (host[:port] per line); "" = none */
    char *rpc_version;       /* reference protocol "MAJ.MIN[.PATCH]"; "" = ask rpc-server */
    unsigned rpc_probe_timeout_ms;
    char *sharded_models;    /* ["name", ...] or "a,b" */
    int sharding_auto;       /* also shard models no node has but the Ollama store does */
    char *model_paths;       /* {"name": "/path/model.gguf"}: explicit paths win */
    char *local_rpc_servers; /* [{"port", "host"?, "mem"?, "device"?, "cache"?}] */
    char *llama_binary;      /* llama-server program */
    char *rpc_server_binary; /* "" = the rpc-server beside llama-server */
    char *llama_extra_args;  /* ["--flag", ...] or "a b c" */
    int llama_ctx_size;
    int llama_parallel;
    int llama_embeddings;
    unsigned llama_startup_timeout_ms;
    unsigned llama_idle_unload_ms;      /* 0 = never unload */
    int llama_port_min, llama_port_max; /* 0 = an ephemeral loopback port */
    unsigned llama_backoff_min_ms, llama_backoff_max_ms;
    unsigned llama_healthy_reset_ms, llama_crash_window_ms;
    int llama_crash_limit;
    unsigned llama_stop_grace_ms;
};

enum sol_routing_mode {
    SOL_ROUTING_COST = 0,    /* lowest expected completion time (scorer.h) */
    SOL_ROUTING_ROUND_ROBIN, /* for comparison: next eligible node in turn */
    SOL_ROUTING_LEAST_CONN,  /* for comparison: eligible node with fewest in flight */
};

/* What main() does after sol_config_from_args() returned 0. */
enum sol_config_action {
    SOL_CONFIG_RUN,     /* start the daemon with the config */
    SOL_CONFIG_EXIT_OK, /* --help/--version/--check-config/--print-config done: exit 0 */
};

/*
 * The single entry point for main(): parses argv (argv[0] is the program
 * name), reads the environment from envp (pass `environ`; tests pass a fake
 * NULL-terminated "NAME=value" array; NULL = empty environment), reads the
 * JSON file named by --config or SOLLOL_CONFIG (there is no default file),
 * merges everything by precedence and validates the result.
 *
 * On success returns 0 and sets *action. Output of --help, --version,
 * --check-config and --print-config goes to `out` (NULL = stdout); on
 * SOL_CONFIG_EXIT_OK after --help/--version, cfg holds no data but is still
 * safe to free. On error returns -1 with the message in err (main should
 * print it to stderr and exit 1); cfg is then empty.
 *
 * In every case cfg must be released with sol_config_free(). cfg's previous
 * content is ignored (not freed): pass a fresh struct.
 *
 * Reloading later: call this again with the original argv and the current
 * environment into a fresh struct, and swap it in only on success. That
 * keeps flags and environment above the (re-read) file.
 */
int sol_config_from_args(struct sol_config *cfg, int argc, char **argv, char **envp,
                         enum sol_config_action *action, FILE *out, char *err, size_t errlen);

/*
 * Fills cfg (previous content ignored) with the built-in defaults: no nodes,
 * no file. Useful for tests and for callers that build a config by hand.
 * Fails only when memory is exhausted.
 */
int sol_config_defaults(struct sol_config *cfg, char *err, size_t errlen);

/*
 * Applies the JSON file at `path` on top of cfg, which must already hold a
 * config (sol_config_defaults or sol_config_from_args): keys present in the
 * file overwrite cfg's values, a "nodes" array replaces cfg's node list, and
 * config_path becomes `path`. Transactional: on error cfg is unchanged.
 * Unlike sol_config_from_args it does not check that nodes are configured.
 */
int sol_config_load_file(struct sol_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Parses an address with Ollama's OLLAMA_HOST rules:
 *  - surrounding spaces, then quotes (' and "), then spaces are stripped;
 *  - "scheme://" is optional; only http and https are accepted (any case);
 *  - the port defaults to default_port without a scheme, 80 for http://,
 *    443 for https://; a port must be 0..65535;
 *  - "[v6]" and "[v6]:port" are accepted, and an unbracketed IPv6 literal
 *    without a port ("::1"); IPv6 hosts are returned normalized, unbracketed;
 *  - ":1234" gives an empty host (all interfaces), and an empty address
 *    gives 127.0.0.1, as in Ollama;
 *  - everything from the first '/' after the host is a path prefix, returned
 *    as "" or "/prefix" without trailing slashes; '?' and '#' are rejected.
 * Unlike Ollama, which falls back to the default port with a warning, a bad
 * port is an error here: a typo in a config must not go unnoticed.
 *
 * Outputs are malloc'd (free them); any out pointer except host and port
 * may be NULL when not wanted. On error returns -1 with a bare reason in err
 * ("invalid port '99999'"), without the "config: key:" prefix, which the
 * caller adds, and sets nothing.
 */
int sol_config_parse_host(const char *text, int default_port, char **scheme, char **host, int *port,
                          char **path_prefix, char *err, size_t errlen);

/*
 * Appends one node to cfg: url is parsed with the OLLAMA_HOST rules, the
 * per-node settings take their defaults, name NULL means host:port. For
 * nodes that appear at run time, e.g. demo mode's simulators once their
 * ports are known. Fails, leaving cfg unchanged, on an invalid URL or name,
 * or when the name or the URL is already taken; err then names the key
 * ("config: nodes[3].name: duplicate node name 'sim-1' (also nodes[0])").
 */
int sol_config_add_node(struct sol_config *cfg, const char *name, const char *url, char *err,
                        size_t errlen);

/*
 * For a reload: sets every key of `next` whose name starts with one of
 * `prefixes` (NULL-terminated) back to its value in `cur` (text duplicated),
 * calling changed(key) for each that differed. Returns how many differed,
 * or -1 when memory ran out (next is then partly restored but valid).
 */
int sol_config_keep_keys(struct sol_config *next, const struct sol_config *cur,
                         const char *const *prefixes, void (*changed)(const char *key));

/* Frees everything cfg owns and zeroes it. Safe on a zeroed struct. */
void sol_config_free(struct sol_config *cfg);

/*
 * The effective configuration as a JSON document in the config file's own
 * format (so it can be fed back with --config), for --print-config.
 * Node URLs are printed normalized (base_url). Values that may hold secrets
 * (rows flagged SOL_CK_SECRET, node headers such as Authorization, Cookie or
 * any header whose name contains "token", "secret", "key" or "password")
 * are printed as "<redacted>". Returns a malloc'd string (free() it), or
 * NULL when memory is exhausted.
 */
char *sol_config_to_json(const struct sol_config *cfg);

/* ---- The key table (read-only; exported for --help and the tests) ---- */

enum sol_config_type {
    SOL_CONF_STRING,      /* char *; JSON string */
    SOL_CONF_INT,         /* int; JSON integer; bounds apply */
    SOL_CONF_BOOL,        /* int 0/1; JSON true/false; text true/false/1/0/yes/no/on/off */
    SOL_CONF_DURATION_MS, /* unsigned ms; integer ms or Go duration ("1500ms", "5s", "1h30m") */
    SOL_CONF_SIZE,        /* unsigned long long bytes; integer or "64MiB", "512KiB", "1GB" */
    SOL_CONF_ENUM,        /* int index into choices; JSON string */
    SOL_CONF_DOUBLE,      /* double; JSON number */
    SOL_CONF_NODES,       /* the node list (struct sol_config.nodes/n_nodes) */
    SOL_CONF_HEADERS,     /* a node's header_lines/n_headers; JSON object of strings */
    SOL_CONF_ACTION,      /* a command-line action (--help...): no value, no field */
    SOL_CONF_JSON,        /* char *; any JSON value kept as its text (lists, objects), or the
                             text of an env/flag value as given; the owner module parses it */
};

/* Row flags. */
#define SOL_CK_META     0x1u /* read before the file (--config): not a file key */
#define SOL_CK_REPEAT   0x2u /* flag may be repeated; values accumulate */
#define SOL_CK_REQUIRED 0x4u /* must be present (node rows) */
#define SOL_CK_SECRET   0x8u /* printed as "<redacted>" by sol_config_to_json */
#define SOL_CK_LIST                                                                                \
    0x10u /* STRING that the file may also give as an array of strings                             \
             (stored comma-separated, as env and flags give it) */

struct sol_config_key {
    const char *key;          /* JSON key, "a.b" = nested object; NULL = not in the file */
    const char *env;          /* environment variable, or NULL */
    const char *env_fallback; /* read only when nothing else sets the key (OLLAMA_HOST) */
    const char *flag;         /* long flag without "--", or NULL */
    const char *metavar;      /* placeholder shown by --help ("HOST:PORT"), or NULL */
    enum sol_config_type type;
    const char *def;            /* default, as text parsed like user input; NULL = none */
    double min, max;            /* inclusive bounds for INT, DURATION_MS (ms), SIZE, DOUBLE */
    const char *const *choices; /* ENUM: NULL-terminated names; the index is stored */
    const char *doc;            /* one line for --help */
    size_t offset;              /* field in struct sol_config (node rows: sol_node_conf) */
    unsigned flags;             /* SOL_CK_* */
    /* Runs after the field was set (derives listen_host, parses node URLs).
     * obj is the struct the offset applies to. Returns 0, or -1 with a bare
     * reason in why. */
    int (*after_set)(void *obj, char *why, size_t whylen);
};

/* Top-level keys, command-line actions included, in --help order. */
extern const struct sol_config_key sol_config_keys[];
extern const size_t sol_config_n_keys;

/* Keys of one element of "nodes" (offsets into struct sol_node_conf). They
 * are file-only; docs/configuration.md lists them as `nodes[].KEY`. */
extern const struct sol_config_key sol_config_node_keys[];
extern const size_t sol_config_n_node_keys;

#endif
