/*
 * compat.h - Ollama's rules that the daemon imitates so that clients written
 * for one Ollama see no difference (issue 17): version order, the
 * keep_alive that unloads, which 500s are request errors, CORS origins
 * (gin-contrib/cors as Ollama configures it), and the summed progress of a
 * pull on several nodes.
 *
 * Pure: no I/O, no clock, no global state. Every function takes bytes a
 * client or a node sent and stays inside them.
 */
#ifndef SOLLOL_COMPAT_H
#define SOLLOL_COMPAT_H

#include "sollol/json_scan.h"
#include "base/node-t.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Orders two Ollama versions ("0.12.6", "0.13.0-rc1", "v0.5.7"): numeric
 * dot-separated parts compared as numbers, a missing part as 0, a
 * pre-release ("-rc1") before its release. <0, 0 or >0 like strcmp.
 */
int sol_compat_version_cmp(const char *a, const char *b);

/*
 * What /api/version answers for the cluster: the lowest Ollama version
 * among the nodes that are up (what every node can do), else the lowest
 * last known of the configured nodes (none is up: still what the cluster
 * will be able to do when they return). Removed and virtual nodes do not
 * count. Returns 1 (from up nodes), 2 (last known), or 0 (no version known:
 * out is "").
 */
int sol_compat_cluster_version(const struct sol_node_table *t, char *out, size_t len);

/*
 * Whether a keep_alive value is zero as Ollama's api.Duration reads it: the
 * number 0 (seconds), or a Go duration string whose value is 0 ("0", "0s",
 * "0m0s"). Absent (span.p NULL), null, negative or anything else: 0.
 */
int sol_compat_keep_alive_zero(const struct sol_json_span *ka);

/*
 * Whether a 500 answer's body is one of the errors Ollama produces for a
 * request that was wrong (a model or file that does not exist, an invalid
 * name, a capability the model lacks, a registry refusing the user), not
 * for a node that is unwell. Conservative: an unknown or unreadable body
 * is not one (it counts against the node). `body` is the answer, or its
 * last bytes.
 */
int sol_compat_is_request_error_500(const char *body, size_t len);

/* ---- CORS (gin-contrib/cors v1.7.2, as Ollama's routes.go sets it up) ---- */

/* Ollama's allowed request headers for a preflight (routes.go), canonical. */
#define SOL_CORS_ALLOW_HEADERS                                                                     \
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,"                   \
    "X-Stainless-Arch,X-Stainless-Async,X-Stainless-Custom-Poll-Interval,"                         \
    "X-Stainless-Helper-Method,X-Stainless-Lang,X-Stainless-Os,X-Stainless-Package-Version,"       \
    "X-Stainless-Poll-Helper,X-Stainless-Retry-Count,X-Stainless-Runtime,"                         \
    "X-Stainless-Runtime-Version,X-Stainless-Timeout"
#define SOL_CORS_ALLOW_METHODS "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
#define SOL_CORS_MAX_AGE       "43200"

enum sol_cors_verdict {
    SOL_CORS_NONE = 0, /* no Origin, or the daemon's own origin: not a CORS request */
    SOL_CORS_ALLOWED,  /* add Access-Control-Allow-Origin (and answer a preflight) */
    SOL_CORS_REFUSED,  /* 403 with an empty body, as gin-contrib/cors answers */
};

/*
 * Decides for one request: `origin` its Origin header (NULL: none), `host`
 * its Host header, `extra` the configured origins (comma-separated, as
 * OLLAMA_ORIGINS; NULL or "" for none) which come before Ollama's defaults
 * (http and https on localhost, 127.0.0.1 and 0.0.0.0 with or without a
 * port, app://, file://, tauri://, vscode-webview://, vscode-file://).
 * An entry with one '*' is a wildcard (prefix*suffix); an entry "*" allows
 * every origin (*allow_all is then set: the answer carries "*"). Exact
 * entries compare lower-cased, as gin-contrib/cors normalises them.
 */
enum sol_cors_verdict sol_cors_check(const char *origin, const char *host, const char *extra,
                                     int *allow_all);

/* ---- one progress for a pull on several nodes ---- */

#define SOL_PULL_MAX_DIGESTS 64

/* The per-digest sums of a pull fanned out to n_legs nodes. */
struct sol_pull_digest {
    char digest[80];
    uint64_t size;       /* the blob's total (the largest any node reported) */
    uint64_t *completed; /* per leg, never decreasing */
    uint64_t sent;       /* completed sum last given to the client */
};

struct sol_pull_progress {
    unsigned n_legs;
    unsigned n_digests;
    struct sol_pull_digest digests[SOL_PULL_MAX_DIGESTS];
    /* Status texts without a digest already given to the client ("pulling
     * manifest", "verifying sha256 digest", ...), NUL-separated. */
    char seen[1024];
    size_t seen_len;
};

/*
 * One node's progress for one digest: returns the digest's entry with the
 * summed values to give the client (total = size x legs, completed = the
 * sum of the legs' completed, never less than before), or NULL when the
 * table is full or memory runs out (the caller then passes the node's line
 * on as it is).
 */
struct sol_pull_digest *sol_pull_progress_update(struct sol_pull_progress *p, unsigned leg,
                                                 const char *digest, uint64_t total,
                                                 uint64_t completed);

/* Sum to report for d now: *total = size x legs, *completed = max(sum, sent). */
void sol_pull_progress_sums(struct sol_pull_progress *p, struct sol_pull_digest *d, uint64_t *total,
                            uint64_t *completed);

/* A status line without a digest: 1 the first time this text is seen (give
 * it to the client), 0 after (another node reached the same step). */
int sol_pull_progress_first_status(struct sol_pull_progress *p, const char *status);

void sol_pull_progress_free(struct sol_pull_progress *p);

#endif
