/*
 * compat.c - Ollama's rules the daemon imitates (see compat.h).
 */
#include "base/compat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- versions ----------------------------------------------------------- */

/* Reads "1.2.3" into parts[4]; returns where the pre-release starts ("rc1"
 * after '-'), or NULL when there is none. */
static const char *version_parts(const char *s, unsigned long long parts[4])
{
    memset(parts, 0, 4 * sizeof parts[0]);
    if (*s == 'v' || *s == 'V')
        s++;
    for (int i = 0; i < 4 && isdigit((unsigned char)*s); i++) {
        while (isdigit((unsigned char)*s)) {
            if (parts[i] < 100000000000ull)
                parts[i] = parts[i] * 10 + (unsigned)(*s - '0');
            s++;
        }
        if (*s != '.')
            break;
        s++;
    }
    while (*s && *s != '-' && *s != '+')
        s++;
    return *s == '-' ? s + 1 : NULL;
}

int sol_compat_version_cmp(const char *a, const char *b)
{
    unsigned long long pa[4], pb[4];
    const char *ra = version_parts(a, pa), *rb = version_parts(b, pb);
    for (int i = 0; i < 4; i++)
        if (pa[i] != pb[i])
            return pa[i] < pb[i] ? -1 : 1;
    if (!ra || !rb)
        return ra ? -1 : rb ? 1 : 0; /* a release after its pre-releases */
    size_t la = strcspn(ra, "+"), lb = strcspn(rb, "+");
    int c = strncmp(ra, rb, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

int sol_compat_cluster_version(const struct sol_node_table *t, char *out, size_t len)
{
    for (int pass = 1; pass <= 2; pass++) {
        const char *low = NULL;
        for (unsigned i = 0; i < t->count; i++) {
            const struct sol_node *n = t->nodes[i];
            if (n->removed || n->external || !n->version[0] ||
                (pass == 1 && n->state != SOL_NODE_UP))
                continue;
            if (!low || sol_compat_version_cmp(n->version, low) < 0)
                low = n->version;
        }
        if (low) {
            snprintf(out, len, "%s", low);
            return pass;
        }
    }
    if (len)
        out[0] = '\0';
    return 0;
}

/* ---- keep_alive ---------------------------------------------------------- */

/* A Go duration (time.ParseDuration) whose value is 0. */
static int go_duration_zero(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (strcmp(s, "0") == 0)
        return 1;
    if (!*s)
        return 0;
    static const char *const units[] = {"ns", "us", "\xc2\xb5s", "\xce\xbcs", "ms", "s", "m", "h"};
    while (*s) {
        int digits = 0;
        while (*s == '0') /* any other digit makes it non-zero */
            s++, digits++;
        if (*s == '.') {
            s++;
            while (*s == '0')
                s++, digits++;
        }
        if (!digits || isdigit((unsigned char)*s))
            return 0;
        size_t best = 0;
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
            size_t ul = strlen(units[u]);
            if (ul > best && strncmp(s, units[u], ul) == 0)
                best = ul;
        }
        if (!best)
            return 0;
        s += best;
    }
    return 1;
}

int sol_compat_keep_alive_zero(const struct sol_json_span *ka)
{
    if (!ka->p)
        return 0;
    if (ka->type == SOL_JSON_NUMBER) {
        double v;
        /* api.Duration: seconds as float64, then time.Duration(v * 1e9). */
        return sol_json_number_double(ka, &v) == 0 && v >= 0 && v * 1e9 < 1;
    }
    if (ka->type != SOL_JSON_STRING)
        return 0;
    char s[64];
    long n = sol_json_string_decode(ka, s, sizeof s);
    return n > 0 && (size_t)n == strlen(s) && go_duration_zero(s);
}

/* ---- 500s that are request errors ------------------------------------- */

struct error_text {
    char text[512];
    int found;
};

static int on_error_member(void *ud, const struct sol_json_span *key, const struct sol_json_span *v)
{
    struct error_text *e = ud;
    if (sol_json_key_equals(key, "error") && v->type == SOL_JSON_STRING &&
        sol_json_string_decode(v, e->text, sizeof e->text) >= 0)
        e->found = 1;
    return 0;
}

static int has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

int sol_compat_is_request_error_500(const char *body, size_t len)
{
    /* The answer may be a tail: start at the last line that is an object. */
    while (len && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
        len--;
    size_t start = len;
    while (start > 0 && body[start - 1] != '\n')
        start--;
    struct error_text e = {.found = 0};
    char jerr[64];
    if (sol_json_scan_object(body + start, len - start, 8, on_error_member, &e, jerr,
                             sizeof jerr) != SOL_JSON_OK ||
        !e.found)
        return 0;
    for (char *p = e.text; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *s = e.text;
    /* A model, manifest or blob the request named does not exist. Not any
     * "not found" or missing file: a runner executable or library missing
     * is the node's problem. */
    if ((has(s, "model ") || has(s, "manifest") || has(s, "blob")) && has(s, "not found") &&
        !has(s, "executable"))
        return 1;
    if (has(s, "no such file or directory") && (has(s, "/manifests/") || has(s, "/blobs/")))
        return 1;
    static const char *const request_errors[] = {
        "file does not exist",            /* the registry has no such model */
        "invalid model name",             /* errtypes.InvalidModelNameErrMsg */
        " is invalid",                    /* name/source/destination %q is invalid */
        "insecure protocol http",         /* push/pull over http without insecure */
        "unauthorized",                   /* the registry refuses the user's key */
        "unknown ollama key",             /* the same, with the key named */
        "does not support",               /* a capability the model lacks */
        " is required",                   /* a field the request left out */
        "neither 'from' or 'files'",      /* create */
        "no files provided to convert",   /* create */
        "only one adapter is currently",  /* create */
        "not in gguf format",             /* create */
        "file path must be relative",     /* create */
        "quantization is only supported", /* create */
        "template error",                 /* the request's template */
        "only supports one image",        /* more images than the model takes */
    };
    for (size_t i = 0; i < sizeof request_errors / sizeof request_errors[0]; i++)
        if (has(s, request_errors[i]))
            return 1;
    return 0;
}

/* ---- CORS --------------------------------------------------------------- */

static const char *const default_origins[] = {
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0",   "https://0.0.0.0",   "http://0.0.0.0:*",   "https://0.0.0.0:*",
    "app://*",          "file://*",          "tauri://*",          "vscode-webview://*",
    "vscode-file://*",
};

/* gin-contrib/cors: an entry with '*' is prefix*suffix (AllowWildcard);
 * others compare exactly with the entry lower-cased (normalize()). */
static int origin_matches(const char *entry, size_t elen, const char *origin, int *allow_all)
{
    while (elen && (*entry == ' ' || *entry == '\t'))
        entry++, elen--;
    while (elen && (entry[elen - 1] == ' ' || entry[elen - 1] == '\t'))
        elen--;
    if (!elen)
        return 0;
    if (elen == 1 && entry[0] == '*') {
        *allow_all = 1;
        return 1;
    }
    size_t olen = strlen(origin);
    const char *star = memchr(entry, '*', elen);
    if (star) {
        size_t pre = (size_t)(star - entry), suf = elen - pre - 1;
        return olen >= pre + suf && strncmp(origin, entry, pre) == 0 &&
               strncmp(origin + olen - suf, star + 1, suf) == 0;
    }
    if (olen != elen)
        return 0;
    for (size_t i = 0; i < elen; i++)
        if ((char)tolower((unsigned char)entry[i]) != origin[i])
            return 0;
    return 1;
}

enum sol_cors_verdict sol_cors_check(const char *origin, const char *host, const char *extra,
                                     int *allow_all)
{
    *allow_all = 0;
    if (!origin || !*origin)
        return SOL_CORS_NONE;
    if (host && *host) {
        if ((strncmp(origin, "http://", 7) == 0 && strcmp(origin + 7, host) == 0) ||
            (strncmp(origin, "https://", 8) == 0 && strcmp(origin + 8, host) == 0))
            return SOL_CORS_NONE; /* the daemon's own origin (a fetch from its dashboard) */
    }
    for (const char *p = extra; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (origin_matches(p, n, origin, allow_all))
            return SOL_CORS_ALLOWED;
        p += n + (comma ? 1 : 0);
    }
    for (size_t i = 0; i < sizeof default_origins / sizeof default_origins[0]; i++)
        if (origin_matches(default_origins[i], strlen(default_origins[i]), origin, allow_all))
            return SOL_CORS_ALLOWED;
    return SOL_CORS_REFUSED;
}

/* ---- pull progress ------------------------------------------------------ */

struct sol_pull_digest *sol_pull_progress_update(struct sol_pull_progress *p, unsigned leg,
                                                 const char *digest, uint64_t total,
                                                 uint64_t completed)
{
    if (leg >= p->n_legs || strlen(digest) >= sizeof p->digests[0].digest)
        return NULL;
    struct sol_pull_digest *d = NULL;
    for (unsigned i = 0; i < p->n_digests && !d; i++)
        if (strcmp(p->digests[i].digest, digest) == 0)
            d = &p->digests[i];
    if (!d) {
        if (p->n_digests == SOL_PULL_MAX_DIGESTS)
            return NULL;
        uint64_t *c = calloc(p->n_legs, sizeof *c);
        if (!c)
            return NULL;
        d = &p->digests[p->n_digests++];
        memset(d, 0, sizeof *d);
        snprintf(d->digest, sizeof d->digest, "%s", digest);
        d->completed = c;
    }
    if (total > d->size)
        d->size = total;
    if (completed > d->completed[leg])
        d->completed[leg] = completed;
    return d;
}

void sol_pull_progress_sums(struct sol_pull_progress *p, struct sol_pull_digest *d, uint64_t *total,
                            uint64_t *completed)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < p->n_legs; i++)
        sum += d->completed[i] < d->size ? d->completed[i] : d->size;
    if (sum < d->sent)
        sum = d->sent;
    d->sent = sum;
    *total = d->size * p->n_legs;
    *completed = sum;
}

int sol_pull_progress_first_status(struct sol_pull_progress *p, const char *status)
{
    size_t n = strlen(status);
    for (size_t off = 0; off < p->seen_len;) {
        size_t l = strlen(p->seen + off);
        if (l == n && memcmp(p->seen + off, status, n) == 0)
            return 0;
        off += l + 1;
    }
    if (p->seen_len + n + 1 <= sizeof p->seen) {
        memcpy(p->seen + p->seen_len, status, n + 1);
        p->seen_len += n + 1;
    }
    return 1;
}

void sol_pull_progress_free(struct sol_pull_progress *p)
{
    for (unsigned i = 0; i < p->n_digests; i++)
        free(p->digests[i].completed);
    p->n_digests = 0;
}
