/*
 * auth.c - API keys, admin routes, public paths and per-key rate limits
 * (see auth.h).
 */
#include "base/auth.h"

#include "sollol/buf.h"
#include "base/http_reply.h"
#include "base/routes.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEYS_FILE (1u << 20)
#define MAX_NAME      64

int sol_auth_parse_rate(const char *text, double *per_ms, double *burst, char *why, size_t whylen)
{
    char *end;
    errno = 0;
    double n = strtod(text, &end);
    double unit_ms = 0;
    if (end != text && *end == '/' && end[1] && !end[2])
        unit_ms = end[1] == 's' ? 1e3 : end[1] == 'm' ? 6e4 : end[1] == 'h' ? 3.6e6 : 0;
    if (end == text || errno || !unit_ms || !(n >= 1 && n <= 1e9) || !isfinite(n) ||
        (text[0] < '0' || text[0] > '9')) {
        snprintf(why, whylen, "invalid rate '%.40s' (expected N/s, N/m or N/h with N >= 1)", text);
        return -1;
    }
    *per_ms = n / unit_ms;
    *burst = n;
    return 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    /* Kept apart from the address hashes of unauthenticated clients. */
    return h ^ 0x4b45590000000000ull;
}

static void key_free(struct sol_auth_key *k)
{
    free(k->name);
    for (size_t i = 0; i < k->n_models; i++)
        free(k->models[i]);
    free(k->models);
    memset(k, 0, sizeof *k);
}

void sol_auth_free(struct sol_auth *a)
{
    for (size_t i = 0; i < a->n_keys; i++)
        key_free(&a->keys[i]);
    free(a->keys);
    for (size_t i = 0; i < a->n_public; i++)
        free(a->public_paths[i]);
    free(a->public_paths);
    while (a->retired) {
        struct sol_auth_retired *r = a->retired;
        a->retired = r->next;
        for (size_t i = 0; i < r->n_keys; i++)
            key_free(&r->keys[i]);
        free(r->keys);
        free(r);
    }
    memset(a, 0, sizeof *a);
}

int sol_auth_replace(struct sol_auth *a, struct sol_auth *next, unsigned *added, unsigned *removed,
                     unsigned *kept)
{
    struct sol_auth_retired *r = NULL;
    if (a->n_keys && !(r = calloc(1, sizeof *r)))
        return -1;
    unsigned n_added = 0, n_kept = 0;
    for (size_t i = 0; i < next->n_keys; i++) {
        struct sol_auth_key *k = &next->keys[i];
        const struct sol_auth_key *o = NULL;
        for (size_t j = 0; j < a->n_keys && !o; j++)
            if (strcmp(a->keys[j].name, k->name) == 0)
                o = &a->keys[j];
        if (!o) {
            n_added++;
            continue;
        }
        n_kept++;
        /* A reload is no way to refill a bucket: what was spent stays spent. */
        if (k->rate_per_ms > 0 && o->rate_per_ms > 0) {
            k->tokens = o->tokens < k->burst ? o->tokens : k->burst;
            k->last_ms = o->last_ms;
        }
    }
    if (added)
        *added = n_added;
    if (kept)
        *kept = n_kept;
    if (removed)
        *removed = (unsigned)a->n_keys - n_kept;
    if (r) {
        r->keys = a->keys;
        r->n_keys = a->n_keys;
        r->next = a->retired;
        a->retired = r;
    } else {
        free(a->keys);
    }
    for (size_t i = 0; i < a->n_public; i++)
        free(a->public_paths[i]);
    free(a->public_paths);
    a->keys = next->keys;
    a->n_keys = next->n_keys;
    a->public_paths = next->public_paths;
    a->n_public = next->n_public;
    struct sol_auth_retired *keep = next->retired;
    memset(next, 0, sizeof *next);
    next->retired = keep; /* none: next came from sol_auth_init */
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == '\\' || s[i] == 0x7f)
            return 0;
    return 1;
}

/* One entry of a keys array. `where` is "auth.keys[3]" or "FILE: keys[3]". */
static int key_from_json(struct sol_auth_key *k, const cJSON *o, int plain_ok, const char *where,
                         char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "%s: expected an object", where);
        return -1;
    }
    int have_key = 0;
    for (const cJSON *it = o->child; it; it = it->next) {
        const char *f = it->string;
        for (const cJSON *p = o->child; p != it; p = p->next)
            if (strcmp(p->string, f) == 0) {
                snprintf(err, errlen, "%s.%.32s: key is given twice", where, f);
                return -1;
            }
        if (strcmp(f, "name") == 0) {
            if (!cJSON_IsString(it) || !valid_name(it->valuestring)) {
                snprintf(err, errlen,
                         "%s.name: expected 1..64 printable characters without spaces or quotes",
                         where);
                return -1;
            }
            if (!(k->name = strdup(it->valuestring)))
                goto oom;
        } else if (strcmp(f, "sha256") == 0) {
            if (!cJSON_IsString(it) || sol_sha256_from_hex(it->valuestring, k->sha) < 0) {
                snprintf(err, errlen, "%s.sha256: expected 64 hex digits (sha256sum of the key)",
                         where);
                return -1;
            }
            have_key++;
        } else if (strcmp(f, "key") == 0) {
            if (!plain_ok) {
                snprintf(err, errlen,
                         "%s.key: plain keys are accepted only from auth.keys_file (a file only "
                         "sollold can read); give \"sha256\" here",
                         where);
                return -1;
            }
            if (!cJSON_IsString(it) || strlen(it->valuestring) < 8) {
                snprintf(err, errlen, "%s.key: expected a string of at least 8 characters", where);
                return -1;
            }
            sol_sha256(it->valuestring, strlen(it->valuestring), k->sha);
            have_key++;
        } else if (strcmp(f, "models") == 0) {
            if (!cJSON_IsArray(it)) {
                snprintf(err, errlen, "%s.models: expected an array of model name patterns", where);
                return -1;
            }
            size_t n = (size_t)cJSON_GetArraySize(it);
            if (n == 0) {
                /* An empty list would read as "no restriction": refuse it
                 * rather than fail open. */
                snprintf(err, errlen,
                         "%s.models: an empty list is not allowed (it would allow every "
                         "model); list the model patterns the key may use, or leave \"models\" "
                         "out to allow every model",
                         where);
                return -1;
            }
            k->models = calloc(n, sizeof *k->models);
            if (!k->models)
                goto oom;
            const cJSON *m;
            cJSON_ArrayForEach(m, it)
            {
                if (!cJSON_IsString(m) || !*m->valuestring || strlen(m->valuestring) > 256) {
                    snprintf(err, errlen, "%s.models[%zu]: expected a non-empty pattern", where,
                             k->n_models);
                    return -1;
                }
                if (!(k->models[k->n_models] = strdup(m->valuestring)))
                    goto oom;
                k->n_models++;
            }
        } else if (strcmp(f, "rate") == 0) {
            char why[128];
            if (!cJSON_IsString(it) ||
                sol_auth_parse_rate(it->valuestring, &k->rate_per_ms, &k->burst, why, sizeof why)) {
                snprintf(err, errlen, "%s.rate: %s", where,
                         cJSON_IsString(it) ? why : "expected a string such as \"120/m\"");
                return -1;
            }
            k->tokens = k->burst;
        } else if (strcmp(f, "admin") == 0) {
            if (!cJSON_IsBool(it)) {
                snprintf(err, errlen, "%s.admin: expected true or false", where);
                return -1;
            }
            k->admin = cJSON_IsTrue(it);
        } else {
            snprintf(err, errlen, "%s.%.32s: unknown key (expected name, %s, models, rate, admin)",
                     where, f, plain_ok ? "key or sha256" : "sha256");
            return -1;
        }
    }
    if (!k->name) {
        snprintf(err, errlen, "%s.name: required", where);
        return -1;
    }
    if (have_key != 1) {
        snprintf(err, errlen, "%s: give exactly one of %s", where,
                 plain_ok ? "\"key\" and \"sha256\"" : "\"sha256\"");
        return -1;
    }
    k->fairness = fnv1a(k->name);
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", where);
    return -1;
}

/* Appends the keys of a JSON array to a. */
static int add_keys(struct sol_auth *a, const cJSON *arr, int plain_ok, const char *prefix,
                    char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "%s: expected an array of key objects", prefix);
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (!n)
        return 0;
    struct sol_auth_key *grown = realloc(a->keys, (a->n_keys + n) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "%s: out of memory", prefix);
        return -1;
    }
    a->keys = grown;
    size_t i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        char where[320];
        snprintf(where, sizeof where, "%s[%zu]", prefix, i++);
        struct sol_auth_key *k = &a->keys[a->n_keys];
        if (key_from_json(k, o, plain_ok, where, err, errlen) < 0) {
            key_free(k);
            return -1;
        }
        a->n_keys++;
        for (size_t j = 0; j + 1 < a->n_keys; j++) {
            if (strcmp(a->keys[j].name, k->name) == 0) {
                snprintf(err, errlen, "%s.name: duplicate key name '%s'", where, k->name);
                return -1;
            }
            if (sol_ct_equal(a->keys[j].sha, k->sha, SOL_SHA256_LEN)) {
                snprintf(err, errlen, "%s: same key as '%s'", where, a->keys[j].name);
                return -1;
            }
        }
    }
    return 0;
}

/*
 * Reads the keys file after checking that only this user can read it: a
 * plain key in a world-readable file is a key anyone on the machine has.
 * The checks are made on the open descriptor (fstat), not the path, so the
 * file cannot be swapped between check and read.
 */
static char *read_keys_file(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO must not block open() (reloads run on the loop);
     * fstat below then refuses anything but a regular file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "auth.keys_file: cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "auth.keys_file: cannot stat '%s': %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen,
                 "auth.keys_file: '%s' is not a regular file (a FIFO, device or directory is "
                 "never read)",
                 path);
    } else if (st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "auth.keys_file: '%s' is owned by uid %u, not by sollold's user (uid %u); "
                 "plain keys must be in a file only sollold can read",
                 path, (unsigned)st.st_uid, (unsigned)geteuid());
    } else if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "auth.keys_file: '%s' has mode %04o: others can read it; plain keys must be in "
                 "a file only sollold can read (chmod 600 '%s')",
                 path, (unsigned)(st.st_mode & 07777), path);
    } else if (st.st_size > (off_t)MAX_KEYS_FILE) {
        snprintf(err, errlen, "auth.keys_file: '%s' is larger than 1 MiB", path);
    } else if (!(text = malloc((size_t)st.st_size + 1))) {
        snprintf(err, errlen, "auth.keys_file: out of memory");
    } else {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        text[got] = '\0';
    }
    close(fd);
    return text;
}

static int load_keys_file(struct sol_auth *a, const char *path, char *err, size_t errlen)
{
    char *text = read_keys_file(path, err, errlen);
    if (!text)
        return -1;
    cJSON *root = cJSON_Parse(text);
    memset(text, 0, strlen(text)); /* plain keys do not linger in freed memory */
    free(text);
    if (!root) {
        snprintf(err, errlen, "auth.keys_file: '%s' is not valid JSON", path);
        return -1;
    }
    const cJSON *arr = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "keys") : root;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "auth.keys_file: %.200s: keys", path);
    int rc = add_keys(a, arr, 1, prefix, err, errlen);
    cJSON_Delete(root);
    return rc;
}

static int load_public(struct sol_auth *a, const char *public_json, char *err, size_t errlen)
{
    if (!public_json || !*public_json)
        return 0;
    cJSON *arr = cJSON_Parse(public_json);
    int rc = 0;
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "auth.public: expected an array of paths such as \"/metrics\"");
        rc = -1;
    }
    size_t n = rc ? 0 : (size_t)cJSON_GetArraySize(arr);
    if (n && !(a->public_paths = calloc(n, sizeof *a->public_paths))) {
        snprintf(err, errlen, "auth.public: out of memory");
        rc = -1;
    }
    const cJSON *p;
    for (p = rc ? NULL : arr->child; p; p = p->next) {
        if (!cJSON_IsString(p) || p->valuestring[0] != '/' || strlen(p->valuestring) > 255) {
            snprintf(err, errlen, "auth.public[%zu]: expected a path starting with '/'",
                     a->n_public);
            rc = -1;
            break;
        }
        if (!(a->public_paths[a->n_public] = strdup(p->valuestring))) {
            snprintf(err, errlen, "auth.public: out of memory");
            rc = -1;
            break;
        }
        a->n_public++;
    }
    cJSON_Delete(arr);
    return rc;
}

int sol_auth_init(struct sol_auth *a, const char *keys_json, const char *keys_file,
                  const char *public_json, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    int rc = 0;
    if (keys_json && *keys_json) {
        cJSON *arr = cJSON_Parse(keys_json);
        rc = add_keys(a, arr, 0, "auth.keys", err, errlen);
        cJSON_Delete(arr);
    }
    if (!rc && keys_file && *keys_file)
        rc = load_keys_file(a, keys_file, err, errlen);
    if (!rc)
        rc = load_public(a, public_json, err, errlen);
    if (rc)
        sol_auth_free(a);
    return rc;
}

/* The validators report without the "auth.xxx: " prefix config.c adds. */
static int check_with(const char *keys_json, const char *keys_file, const char *public_json,
                      const char *prefix, char *why, size_t whylen)
{
    struct sol_auth a;
    char err[512];
    int rc = sol_auth_init(&a, keys_json, keys_file, public_json, err, sizeof err);
    sol_auth_free(&a);
    if (rc) {
        size_t n = strlen(prefix);
        snprintf(why, whylen, "%s", strncmp(err, prefix, n) == 0 ? err + n : err);
    }
    return rc;
}

int sol_auth_check_keys_json(const char *keys_json, char *why, size_t whylen)
{
    return check_with(keys_json, NULL, NULL, "auth.keys", why, whylen);
}

int sol_auth_check_keys_file(const char *path, char *why, size_t whylen)
{
    return check_with(NULL, path, NULL, "auth.keys_file: ", why, whylen);
}

int sol_auth_check_public_json(const char *public_json, char *why, size_t whylen)
{
    return check_with(NULL, NULL, public_json, "auth.public", why, whylen);
}

int sol_auth_enabled(const struct sol_auth *a)
{
    return a->n_keys > 0;
}

int sol_auth_route_is_admin(const struct sol_route *r)
{
    return r && (r->kind == SOL_ROUTE_FANOUT || r->kind == SOL_ROUTE_PINNED);
}

/* The key of "Bearer KEY" (scheme case-insensitive, RFC 7235), or NULL. */
static const char *bearer(const char *h, size_t *len)
{
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    *len = n;
    return n ? h : NULL;
}

int sol_auth_is_public(const struct sol_auth *a, const char *path)
{
    for (size_t i = 0; i < a->n_public; i++)
        if (strcmp(path, a->public_paths[i]) == 0)
            return 1;
    return 0;
}

const struct sol_auth_key *sol_auth_identify(const struct sol_auth *a, const char *path,
                                             const char *authorization)
{
    if (!a->n_keys)
        return NULL;
    for (size_t i = 0; i < a->n_public; i++)
        if (strcmp(path, a->public_paths[i]) == 0)
            return NULL;
    size_t len = 0;
    const char *presented = bearer(authorization, &len);
    if (!presented)
        return NULL;
    unsigned char sha[SOL_SHA256_LEN];
    sol_sha256(presented, len, sha);
    const struct sol_auth_key *found = NULL;
    for (size_t i = 0; i < a->n_keys; i++) /* constant time, as in sol_auth_check */
        if (sol_ct_equal(sha, a->keys[i].sha, SOL_SHA256_LEN))
            found = &a->keys[i];
    return found;
}

void sol_auth_check(struct sol_auth *a, const char *path, int admin_route,
                    const char *authorization, uint64_t now_ms, struct sol_auth_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (!a->n_keys)
        return;
    size_t len = 0;
    const char *presented = bearer(authorization, &len);
    if (presented) {
        unsigned char sha[SOL_SHA256_LEN];
        sol_sha256(presented, len, sha);
        /* Every configured hash is compared, each in constant time, so the
         * time taken says nothing about which key or byte differed. */
        for (size_t i = 0; i < a->n_keys; i++)
            if (sol_ct_equal(sha, a->keys[i].sha, SOL_SHA256_LEN))
                v->key = &a->keys[i];
    }
    for (size_t i = 0; i < a->n_public; i++)
        if (strcmp(path, a->public_paths[i]) == 0) {
            v->key = NULL; /* open to all: no rate is charged */
            return;
        }
    if (!v->key) {
        v->status = 401;
        snprintf(v->msg, sizeof v->msg,
                 presented ? "invalid API key"
                 : authorization
                     ? "unsupported Authorization scheme: send 'Authorization: Bearer <key>'"
                     : "missing API key: send 'Authorization: Bearer <key>'");
        return;
    }
    struct sol_auth_key *k = (struct sol_auth_key *)v->key;
    if (admin_route && !k->admin) {
        v->status = 403;
        snprintf(v->msg, sizeof v->msg, "API key '%s' may not use %.60s (admin only)", k->name,
                 path);
        return;
    }
    if (k->rate_per_ms > 0) {
        if (now_ms > k->last_ms) {
            k->tokens += (double)(now_ms - k->last_ms) * k->rate_per_ms;
            if (k->tokens > k->burst)
                k->tokens = k->burst;
        }
        k->last_ms = now_ms;
        if (k->tokens < 1.0) {
            double wait_ms = (1.0 - k->tokens) / k->rate_per_ms;
            /* The epsilon absorbs rounding in the rate (1/h is not exact). */
            v->retry_after_s = (unsigned)ceil(wait_ms / 1000.0 - 1e-6);
            if (v->retry_after_s == 0)
                v->retry_after_s = 1;
            v->status = 429;
            snprintf(v->msg, sizeof v->msg, "rate limit of API key '%s' exceeded; retry in %u s",
                     k->name, v->retry_after_s);
            return;
        }
        k->tokens -= 1.0;
    }
}

int sol_auth_model_allowed(const struct sol_auth_key *k, const char *as_sent, const char *canonical)
{
    if (!k || !k->n_models)
        return 1;
    for (size_t i = 0; i < k->n_models; i++)
        if ((as_sent && fnmatch(k->models[i], as_sent, 0) == 0) ||
            (canonical && fnmatch(k->models[i], canonical, 0) == 0))
            return 1;
    return 0;
}

enum MHD_Result sol_auth_refuse(struct MHD_Connection *c, const struct sol_auth_verdict *v,
                                int openai)
{
    struct sol_buf b = {0};
    if (sol_error_body(&b, v->status, openai, v->msg) < 0) {
        sol_buf_free(&b);
        return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    sol_buf_free(&b);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, SOL_CT_JSON);
    if (v->status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (v->status == 429 || v->retry_after_s) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", v->retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, v->status, r);
    MHD_destroy_response(r);
    return ret;
}
