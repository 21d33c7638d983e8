/*
 * auth.h - access control: API keys, per-key model lists, admin routes,
 * public paths and per-key rate limits (token buckets).
 *
 * Configuration (docs/security.md):
 *   "auth": {
 *     "keys": [{"name": "team-a", "sha256": "<64 hex>", "models": ["llama3.2*"],
 *               "rate": "120/m", "admin": false}],
 *     "keys_file": "/etc/sollol/keys.json",
 *     "public": ["/metrics", "/api/version"]
 *   }
 * Keys in the main config are given by their SHA-256 only. Plain keys
 * ("key": "...") are accepted only from keys_file, which must be a regular
 * file owned by the daemon's user with no group or other permission bits
 * (mode 0600 or 0400). With no key at all, everything is open.
 *
 * Pure logic apart from sol_auth_refuse() and reading keys_file (done once,
 * before the loop runs): no allocation per request, time passed in.
 */
#ifndef SOLLOL_AUTH_H
#define SOLLOL_AUTH_H

#include "sollol/sha256.h"

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

struct sol_route;

struct sol_auth_key {
    char *name;                        /* unique; feeds the queue's fairness */
    unsigned char sha[SOL_SHA256_LEN]; /* SHA-256 of the key */
    char **models;                     /* fnmatch(3) globs; n_models == 0: every model */
    size_t n_models;
    int admin;          /* may use admin routes (pull, delete, copy, create, push, blobs) */
    double rate_per_ms; /* token refill; 0 = no rate limit */
    double burst;       /* bucket capacity (the N of "N/m") */
    double tokens;      /* current content of the bucket */
    uint64_t last_ms;   /* time of the last refill */
    uint64_t fairness;  /* hash of the name, the queue's client key */
};

/* A key table replaced by a reload: requests in flight may still point at
 * its keys, so it is kept until sol_auth_free() (a few hundred bytes per
 * key per reload). */
struct sol_auth_retired {
    struct sol_auth_retired *next;
    struct sol_auth_key *keys;
    size_t n_keys;
};

struct sol_auth {
    struct sol_auth_key *keys;
    size_t n_keys;
    char **public_paths; /* exact paths open without a key */
    size_t n_public;
    struct sol_auth_retired *retired;
};

/*
 * Reload: the keys and public paths of `next` (from sol_auth_init) take
 * effect in a; next is left empty. A key kept under the same name keeps
 * its token bucket (capped at its new burst when its rate changed; a key
 * that gains a rate starts full). Keys no longer listed stop working at
 * once; the old table is retired (see above), never freed here. Counts of
 * keys added, removed and kept are returned for the log (may be NULL).
 * Returns 0, or -1 when memory runs out (a is then unchanged).
 */
int sol_auth_replace(struct sol_auth *a, struct sol_auth *next, unsigned *added, unsigned *removed,
                     unsigned *kept);

/*
 * Builds the key table from the config's texts: keys_json is the JSON array
 * of "auth.keys" (NULL or "" = none), keys_file a path ("" or NULL = none),
 * public_json the JSON array of "auth.public". Reads keys_file (blocking:
 * call before the loop runs). Returns 0, or -1 with a message in err naming
 * the offending key ("auth.keys[1].sha256: ..."); a is then empty.
 * Free with sol_auth_free() in every case.
 */
int sol_auth_init(struct sol_auth *a, const char *keys_json, const char *keys_file,
                  const char *public_json, char *err, size_t errlen);

/* Frees the table; a is then empty (everything open). Safe on a zeroed struct. */
void sol_auth_free(struct sol_auth *a);

/* Validators for config.c: the same checks as sol_auth_init() on one
 * value, with a bare reason in why. 0 or -1. */
int sol_auth_check_keys_json(const char *keys_json, char *why, size_t whylen);
int sol_auth_check_keys_file(const char *path, char *why, size_t whylen);
int sol_auth_check_public_json(const char *public_json, char *why, size_t whylen);

/*
 * Parses a rate "N/s", "N/m" or "N/h" (N > 0, decimals allowed): the
 * bucket holds N tokens and refills N per unit. Returns 0, or -1 with why.
 */
int sol_auth_parse_rate(const char *text, double *per_ms, double *burst, char *why, size_t whylen);

/* Nonzero when some key is configured (requests then need one). */
int sol_auth_enabled(const struct sol_auth *a);

/* Nonzero for routes that change nodes: pull, delete, copy, create, push,
 * blobs. They need an admin key when keys exist. */
int sol_auth_route_is_admin(const struct sol_route *r);

struct sol_auth_verdict {
    unsigned status;                /* 0 allowed; 401, 403 or 429 refused */
    const struct sol_auth_key *key; /* the caller's key when one was presented and valid */
    unsigned retry_after_s;         /* 429: seconds until a token is there, rounded up */
    char msg[160];                  /* the refusal, for the client */
};

/*
 * Decides whether a request may go on, before its body is read: public
 * paths and "no keys configured" pass without a key; otherwise the
 * Authorization header must be "Bearer KEY" with a known key (401), an
 * admin route needs an admin key (403), and the key's bucket must hold a
 * token (429; one is taken when it does). Each presented key is hashed and
 * compared with every configured hash in constant time.
 */
void sol_auth_check(struct sol_auth *a, const char *path, int admin_route,
                    const char *authorization, uint64_t now_ms, struct sol_auth_verdict *v);

/* Nonzero when path is listed in auth.public (served without a key). */
int sol_auth_is_public(const struct sol_auth *a, const char *path);

/* The key a request presents, as sol_auth_check() would find it, but with
 * no verdict and no token taken: for a request already let through whose
 * key was not kept. NULL when keys are off, the path is public, or no
 * valid key is presented. */
const struct sol_auth_key *sol_auth_identify(const struct sol_auth *a, const char *path,
                                             const char *authorization);

/* Nonzero when key k (NULL = no key: all allowed) may use the model, named
 * as the client spelled it or in canonical form. */
int sol_auth_model_allowed(const struct sol_auth_key *k, const char *as_sent,
                           const char *canonical);

/* Queues the refusal v (status != 0) in Ollama's or OpenAI's error shape,
 * with WWW-Authenticate on 401 and Retry-After on 429 (and on any status
 * with retry_after_s set, e.g. the gate's 503 for a full body budget). */
enum MHD_Result sol_auth_refuse(struct MHD_Connection *c, const struct sol_auth_verdict *v,
                                int openai);

#endif
