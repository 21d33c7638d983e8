/*
 * model_store.c - Ollama model name -> manifest -> GGUF blob (see
 * model_store.h).
 */
#include "base/model_store.h"

#include "base/model_name.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_MAX (1u << 20)

static int copy_part(char *dst, size_t cap, const char *b, size_t n)
{
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, b, n);
    dst[n] = '\0';
    return 0;
}

int sol_model_ref_parse(const char *name, struct sol_model_ref *out)
{
    char canon[SOL_MODEL_NAME_MAX];
    if (!name || sol_model_canonical(name, canon, sizeof canon) < 0)
        return -1;
    const char *s = strstr(name, "://");
    s = s ? s + 3 : name;
    const char *parts[3];
    size_t lens[3];
    unsigned n = 0;
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (n == 3)
            return -1;
        parts[n] = p;
        lens[n] = slash ? (size_t)(slash - p) : strlen(p);
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    /* The tag: a ':' in the last part. */
    const char *last = parts[n - 1];
    const char *colon = memchr(last, ':', lens[n - 1]);
    const char *tag = "latest";
    size_t tag_len = 6;
    if (colon) {
        tag = colon + 1;
        tag_len = lens[n - 1] - (size_t)(colon - last) - 1;
        lens[n - 1] = (size_t)(colon - last);
    }
    const char *host = "registry.ollama.ai", *ns = "library";
    size_t host_len = strlen(host), ns_len = strlen(ns);
    if (n == 3) {
        host = parts[0];
        host_len = lens[0];
        ns = parts[1];
        ns_len = lens[1];
    } else if (n == 2) {
        ns = parts[0];
        ns_len = lens[0];
    }
    if (copy_part(out->host, sizeof out->host, host, host_len) < 0 ||
        copy_part(out->ns, sizeof out->ns, ns, ns_len) < 0 ||
        copy_part(out->model, sizeof out->model, last, lens[n - 1]) < 0 ||
        copy_part(out->tag, sizeof out->tag, tag, tag_len) < 0)
        return -1;
    return 0;
}

int sol_model_store_root(const char *env_models, const char *env_home, char *out, size_t outlen)
{
    int n;
    if (env_models && *env_models)
        n = snprintf(out, outlen, "%s", env_models);
    else if (env_home && *env_home)
        n = snprintf(out, outlen, "%s/.ollama/models", env_home);
    else
        return -1;
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

int sol_model_store_manifest_path(const char *root, const struct sol_model_ref *ref, char *out,
                                  size_t outlen)
{
    int n = snprintf(out, outlen, "%s/manifests/%s/%s/%s/%s", root, ref->host, ref->ns, ref->model,
                     ref->tag);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int valid_digest(const char *d, char *hex_out)
{
    if (strncmp(d, "sha256:", 7) != 0 && strncmp(d, "sha256-", 7) != 0)
        return 0;
    d += 7;
    size_t i = 0;
    for (; d[i]; i++) {
        char c = d[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    if (i != 64)
        return 0;
    memcpy(hex_out, d, 65);
    return 1;
}

int sol_model_store_parse_manifest(const char *root, const char *json, size_t len,
                                   struct sol_model_files *out, char *err, size_t errlen)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    if (!doc || !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        snprintf(err, errlen, "manifest is not a JSON object");
        return -1;
    }
    out->model[0] = out->projector[0] = out->adapter[0] = out->digest[0] = '\0';
    out->model_size = 0;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    int rc = 0;
    if (!cJSON_IsArray(layers)) {
        snprintf(err, errlen, "manifest has no layers array");
        rc = -1;
    }
    const cJSON *list = rc == 0 ? layers : NULL;
    const cJSON *l = NULL;
    cJSON_ArrayForEach(l, list)
    {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(l, "mediaType");
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(l, "digest");
        if (!cJSON_IsString(mt) || !cJSON_IsString(dg))
            continue;
        char *dst = NULL;
        if (strcmp(mt->valuestring, "application/vnd.ollama.image.model") == 0)
            dst = out->model;
        else if (strcmp(mt->valuestring, "application/vnd.ollama.image.projector") == 0)
            dst = out->projector;
        else if (strcmp(mt->valuestring, "application/vnd.ollama.image.adapter") == 0)
            dst = out->adapter;
        if (!dst || dst[0])
            continue;
        char hex[65];
        if (!valid_digest(dg->valuestring, hex)) {
            snprintf(err, errlen, "layer %s has an invalid digest '%.80s'", mt->valuestring,
                     dg->valuestring);
            rc = -1;
            break;
        }
        int n = snprintf(dst, SOL_STORE_PATH_MAX, "%s/blobs/sha256-%s", root, hex);
        if (n < 0 || n >= SOL_STORE_PATH_MAX) {
            snprintf(err, errlen, "blob path too long");
            rc = -1;
            break;
        }
        if (dst == out->model) {
            snprintf(out->digest, sizeof out->digest, "%s", hex);
            const cJSON *sz = cJSON_GetObjectItemCaseSensitive(l, "size");
            /* (bounded: a manifest is outside data; beyond 2^63 it is nonsense) */
            if (cJSON_IsNumber(sz) && sz->valuedouble > 0 && sz->valuedouble < 9.2e18)
                out->model_size = (uint64_t)sz->valuedouble;
        }
    }
    if (rc == 0 && !out->model[0]) {
        snprintf(err, errlen, "manifest has no layer of type application/vnd.ollama.image.model");
        rc = -1;
    }
    cJSON_Delete(doc);
    return rc;
}

/* Appends "/<component>" to dir, matching the component case-insensitively
 * when the exact spelling is absent. */
static int join_ci(char *dir, size_t cap, const char *component)
{
    size_t dl = strlen(dir);
    int n = snprintf(dir + dl, cap - dl, "/%s", component);
    if (n < 0 || (size_t)n >= cap - dl)
        return -1;
    struct stat st;
    if (stat(dir, &st) == 0)
        return 0;
    dir[dl] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)) != NULL) {
        if (strcasecmp(e->d_name, component) == 0) {
            snprintf(dir + dl, cap - dl, "/%s", e->d_name);
            found = 0;
            break;
        }
    }
    closedir(d);
    if (found < 0)
        snprintf(dir + dl, cap - dl, "/%s", component);
    return found;
}

int sol_model_store_resolve(const char *root, const char *name, struct sol_model_files *out,
                            char *err, size_t errlen)
{
    struct sol_model_ref ref;
    memset(out, 0, sizeof *out);
    if (sol_model_ref_parse(name, &ref) < 0) {
        snprintf(err, errlen, "invalid model name '%.200s'", name);
        return -1;
    }
    char path[SOL_STORE_PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/manifests", root);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "model store path too long");
        return -1;
    }
    const char *comps[4] = {ref.host, ref.ns, ref.model, ref.tag};
    for (int i = 0; i < 4; i++) {
        if (join_ci(path, sizeof path, comps[i]) < 0) {
            sol_model_store_manifest_path(root, &ref, path, sizeof path);
            snprintf(err, errlen, "model '%.200s' not found in the Ollama store (no manifest %s)",
                     name, path);
            return -1;
        }
    }
    snprintf(out->manifest, sizeof out->manifest, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: cannot read manifest: %s", path,
                 fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size <= 0 || st.st_size > MANIFEST_MAX) {
        close(fd);
        snprintf(err, errlen, "%s: manifest size %lld out of range", path, (long long)st.st_size);
        return -1;
    }
    char *text = malloc((size_t)st.st_size);
    size_t got = 0;
    while (text && got < (size_t)st.st_size) {
        ssize_t k = read(fd, text + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (!text || got != (size_t)st.st_size) {
        free(text);
        snprintf(err, errlen, "%s: cannot read manifest", path);
        return -1;
    }
    char why[256];
    int rc = sol_model_store_parse_manifest(root, text, got, out, why, sizeof why);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    if (stat(out->model, &st) < 0) {
        snprintf(err, errlen, "model '%.200s': blob %s is missing: %s", name, out->model,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Calls fn for each entry of dir that is a directory (want_dir) or a
 * regular file, skipping dot entries. */
static int walk(const char *dir, int want_dir, int (*fn)(void *, const char *, const char *),
                void *ud)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int stop = 0;
    while (!stop && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[SOL_STORE_PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) < 0)
            continue;
        if (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode))
            stop = fn(ud, path, e->d_name);
    }
    closedir(d);
    return stop;
}

struct list_walk {
    size_t max, count;
    int (*each)(void *ud, const char *canonical);
    void *ud;
    const char *parts[3]; /* host, ns, model of the current level */
    int stop;
};

static int on_tag(void *ud, const char *path, const char *tag)
{
    (void)path;
    struct list_walk *w = ud;
    char name[1200], canon[SOL_MODEL_NAME_MAX];
    snprintf(name, sizeof name, "%s/%s/%s:%s", w->parts[0], w->parts[1], w->parts[2], tag);
    if (sol_model_canonical(name, canon, sizeof canon) < 0)
        return 0;
    if (w->count >= w->max || w->each(w->ud, canon)) {
        w->stop = 1;
        return 1;
    }
    w->count++;
    return 0;
}

static int on_model(void *ud, const char *path, const char *name)
{
    struct list_walk *w = ud;
    w->parts[2] = name;
    walk(path, 0, on_tag, w);
    return w->stop;
}

static int on_ns(void *ud, const char *path, const char *name)
{
    struct list_walk *w = ud;
    w->parts[1] = name;
    walk(path, 1, on_model, w);
    return w->stop;
}

static int on_host(void *ud, const char *path, const char *name)
{
    struct list_walk *w = ud;
    w->parts[0] = name;
    walk(path, 1, on_ns, w);
    return w->stop;
}

int sol_model_store_list(const char *root, size_t max, int (*each)(void *ud, const char *canonical),
                         void *ud)
{
    char dir[SOL_STORE_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/manifests", root);
    if (n < 0 || (size_t)n >= sizeof dir)
        return -1;
    struct list_walk w = {.max = max, .each = each, .ud = ud};
    if (walk(dir, 1, on_host, &w) < 0)
        return -1;
    return (int)w.count;
}
