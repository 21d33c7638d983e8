/*
 * api.c - Ollama's non-inference routes as the simulator answers them:
 * /, /api/version, /api/status, /api/tags, /api/ps, /api/show, /api/pull, /api/push,
 * /api/create, /api/copy, /api/delete, /api/blobs/:digest, /api/me,
 * /api/signout and the OpenAI model list (/v1/models[/:model]).
 *
 * Shapes, field order and status codes follow Ollama v0.32.15
 * (server/routes.go, api/types.go, openai/openai.go, model_list_cache.go).
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sollol/log.h"

/* Digests stored with POST /api/blobs (lower-case hex). */
static char (*g_blobs)[65];
static size_t g_nblobs, g_blob_cap;

/* ---- shared pieces ---- */

static int embedding_length(const struct sim_model *m)
{
    return m->embed ? m->dim : 3072;
}

void api_model_details(struct sbuf *b, const struct sim_model *m, int lengths)
{
    sb_puts(b, "{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":");
    sb_json_str(b, m->family);
    sb_puts(b, ",\"families\":[");
    sb_json_str(b, m->family);
    sb_puts(b, "],\"parameter_size\":");
    sb_json_str(b, m->params);
    sb_puts(b, ",\"quantization_level\":");
    sb_json_str(b, m->quant);
    if (lengths) /* /api/tags since the model list cache (read from the GGUF) */
        sb_printf(b, ",\"context_length\":%d,\"embedding_length\":%d", m->ctx, embedding_length(m));
    sb_putc(b, '}');
}

/* The capabilities array, from the '+'-separated list. */
static void caps_json(struct sbuf *b, const struct sim_model *m)
{
    sb_putc(b, '[');
    const char *c = m->caps;
    int first = 1;
    while (*c) {
        const char *e = strchr(c, '+');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len) {
            if (!first)
                sb_putc(b, ',');
            first = 0;
            sb_json_strn(b, c, len);
        }
        c += len + (e ? 1 : 0);
    }
    sb_putc(b, ']');
}

static int cmp_modified(const void *a, const void *b)
{
    const struct sim_model *x = *(const struct sim_model *const *)a;
    const struct sim_model *y = *(const struct sim_model *const *)b;
    if (x->modified_sec != y->modified_sec)
        return x->modified_sec < y->modified_sec ? 1 : -1;
    return 0;
}

/* Installed models, most recently modified first (stable for ties). */
static size_t sorted_models(struct sim_model ***out)
{
    size_t n = 0;
    for (struct sim_model *m = model_first(); m; m = m->next)
        if (m->installed)
            n++;
    struct sim_model **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        abort();
    size_t i = 0;
    for (struct sim_model *m = model_first(); m; m = m->next)
        if (m->installed)
            v[i++] = m;
    /* insertion sort: stable, and model lists are short */
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && cmp_modified(&v[b - 1], &v[b]) > 0; b--) {
            struct sim_model *t = v[b];
            v[b] = v[b - 1];
            v[b - 1] = t;
        }
    *out = v;
    return n;
}

static void handle_tags(struct sim_req *r)
{
    struct sim_model **v;
    size_t n = sorted_models(&v);
    struct sbuf *b = &r->h.out;
    sb_puts(b, "{\"models\":[");
    for (size_t i = 0; i < n; i++) {
        struct sim_model *m = v[i];
        if (i)
            sb_putc(b, ',');
        sb_puts(b, "{\"name\":");
        sb_json_str(b, m->display);
        sb_puts(b, ",\"model\":");
        sb_json_str(b, m->display);
        sb_puts(b, ",\"modified_at\":\"");
        sb_rfc3339(b, m->modified_sec, m->modified_nsec);
        sb_puts(b, "\",\"size\":");
        sb_i64(b, m->size);
        sb_puts(b, ",\"digest\":");
        sb_json_str(b, m->digest);
        sb_puts(b, ",\"details\":");
        api_model_details(b, m, 1);
        sb_puts(b, ",\"capabilities\":");
        caps_json(b, m);
        sb_putc(b, '}');
    }
    sb_puts(b, "]}");
    free(v);
    req_json_ok(r);
    req_ready(r);
}

/* expires_at as wall-clock seconds/nanoseconds. */
static void model_expiry(const struct sim_model *m, int64_t *sec, long *nsec)
{
    wall_now(sec, nsec);
    int64_t add;
    if (m->session_ns < 0)
        add = INT64_MAX; /* Go: time.Now().Add(math.MaxInt64), about 292 years */
    else if (m->state == M_LOADED && m->active == 0 && m->queue.n == 0 && m->expires_ns)
        add = (int64_t)(m->expires_ns > now_ns() ? m->expires_ns - now_ns() : 0);
    else
        add = m->session_ns;
    *sec += add / 1000000000;
    *nsec += (long)(add % 1000000000);
    if (*nsec >= 1000000000) {
        *nsec -= 1000000000;
        (*sec)++;
    }
}

static void handle_ps(struct sim_req *r)
{
    struct sim_model *v[256];
    int64_t es[256];
    long ens[256];
    size_t n = 0;
    for (struct sim_model *m = model_first(); m && n < 256; m = m->next)
        if (m->state != M_UNLOADED) {
            v[n] = m;
            model_expiry(m, &es[n], &ens[n]);
            n++;
        }
    /* longest remaining first (whole seconds, stable) */
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && es[b - 1] < es[b]; b--) {
            struct sim_model *t = v[b];
            v[b] = v[b - 1];
            v[b - 1] = t;
            int64_t ts = es[b];
            es[b] = es[b - 1];
            es[b - 1] = ts;
            long tn = ens[b];
            ens[b] = ens[b - 1];
            ens[b - 1] = tn;
        }
    struct sbuf *b = &r->h.out;
    sb_puts(b, "{\"models\":[");
    for (size_t i = 0; i < n; i++) {
        struct sim_model *m = v[i];
        if (i)
            sb_putc(b, ',');
        sb_puts(b, "{\"name\":");
        sb_json_str(b, m->display);
        sb_puts(b, ",\"model\":");
        sb_json_str(b, m->display);
        sb_puts(b, ",\"size\":");
        sb_i64(b, m->size);
        sb_puts(b, ",\"digest\":");
        sb_json_str(b, m->digest);
        sb_puts(b, ",\"details\":");
        api_model_details(b, m, 0);
        sb_puts(b, ",\"expires_at\":\"");
        sb_rfc3339(b, es[i], ens[i]);
        sb_puts(b, "\",\"size_vram\":");
        sb_i64(b, m->size);
        sb_puts(b, ",\"context_length\":4096}");
    }
    sb_puts(b, "]}");
    req_json_ok(r);
    req_ready(r);
}

static int quant_file_type(const char *q)
{
    static const struct {
        const char *name;
        int type;
    } t[] = {{"F32", 0},     {"F16", 1},     {"Q4_0", 2},    {"Q4_1", 3},    {"Q8_0", 7},
             {"Q5_0", 8},    {"Q5_1", 9},    {"Q2_K", 10},   {"Q3_K_S", 11}, {"Q3_K_M", 12},
             {"Q3_K_L", 13}, {"Q4_K_S", 14}, {"Q4_K_M", 15}, {"Q5_K_S", 16}, {"Q5_K_M", 17},
             {"Q6_K", 18},   {"BF16", 32}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcasecmp(q, t[i].name) == 0)
            return t[i].type;
    return 15;
}

static int64_t param_count(const char *p)
{
    char *end;
    double v = strtod(p, &end);
    if (*end == 'B' || *end == 'b')
        v *= 1e9;
    else if (*end == 'M' || *end == 'm')
        v *= 1e6;
    else if (*end == 'K' || *end == 'k')
        v *= 1e3;
    return (int64_t)v;
}

struct kv {
    char key[96];
    char val[96]; /* JSON text */
};

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

static const char LLAMA_TEMPLATE[] =
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end "
    "}}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end "
    "}}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>";

static void show_json(struct sbuf *b, const struct sim_model *m)
{
    sb_puts(b, "{\"modelfile\":");
    struct sbuf mf = {0};
    sb_printf(&mf,
              "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, "
              "replace FROM with:\n# FROM %s\n\nFROM /root/.ollama/models/blobs/sha256-%s\n",
              m->display, m->digest);
    if (!m->embed) {
        sb_puts(&mf, "TEMPLATE \"\"\"");
        sb_puts(&mf, LLAMA_TEMPLATE);
        sb_puts(&mf, "\"\"\"\nPARAMETER stop <|start_header_id|>\nPARAMETER stop "
                     "<|end_header_id|>\nPARAMETER stop <|eot_id|>\n");
    }
    sb_json_strn(b, mf.p, mf.len);
    sb_free(&mf);
    if (!m->embed) {
        sb_puts(b, ",\"parameters\":");
        sb_json_str(b, "stop                           \"<|start_header_id|>\"\n"
                       "stop                           \"<|end_header_id|>\"\n"
                       "stop                           \"<|eot_id|>\"");
        sb_puts(b, ",\"template\":");
        sb_json_str(b, LLAMA_TEMPLATE);
    }
    sb_puts(b, ",\"details\":");
    api_model_details(b, m, 0);
    struct kv kv[9];
    memset(kv, 0, sizeof kv);
    int n = 0;
    snprintf(kv[n].key, sizeof kv[n].key, "general.architecture");
    snprintf(kv[n++].val, sizeof kv[0].val, "\"%s\"", m->family);
    snprintf(kv[n].key, sizeof kv[n].key, "general.file_type");
    snprintf(kv[n++].val, sizeof kv[0].val, "%d", quant_file_type(m->quant));
    snprintf(kv[n].key, sizeof kv[n].key, "general.parameter_count");
    snprintf(kv[n++].val, sizeof kv[0].val, "%lld", (long long)param_count(m->params));
    snprintf(kv[n].key, sizeof kv[n].key, "general.quantization_version");
    snprintf(kv[n++].val, sizeof kv[0].val, "2");
    snprintf(kv[n].key, sizeof kv[n].key, "%.60s.block_count", m->family);
    snprintf(kv[n++].val, sizeof kv[0].val, "%d", m->embed ? 12 : 28);
    snprintf(kv[n].key, sizeof kv[n].key, "%.60s.context_length", m->family);
    snprintf(kv[n++].val, sizeof kv[0].val, "%d", m->ctx);
    snprintf(kv[n].key, sizeof kv[n].key, "%.60s.embedding_length", m->family);
    snprintf(kv[n++].val, sizeof kv[0].val, "%d", embedding_length(m));
    snprintf(kv[n].key, sizeof kv[n].key, "tokenizer.ggml.model");
    snprintf(kv[n++].val, sizeof kv[0].val, "\"%s\"", m->embed ? "bert" : "gpt2");
    qsort(kv, (size_t)n, sizeof kv[0], cmp_kv);
    sb_puts(b, ",\"model_info\":{");
    for (int i = 0; i < n; i++) {
        if (i)
            sb_putc(b, ',');
        sb_json_str(b, kv[i].key);
        sb_putc(b, ':');
        sb_puts(b, kv[i].val);
    }
    sb_puts(b, "},\"capabilities\":");
    caps_json(b, m);
    sb_puts(b, ",\"modified_at\":\"");
    sb_rfc3339(b, m->modified_sec, m->modified_nsec);
    sb_puts(b, "\"}");
}

static void handle_show(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.ShowRequest", 0);
    if (!j)
        return;
    const cJSON *v;
    if (!json_field(r, j, "model", cJSON_String, "ShowRequest", "string", 0, &v))
        return;
    const char *name = v ? v->valuestring : NULL;
    if (!name || !*name)
        name = json_str(j, "name");
    if (!name || !*name) {
        req_error(r, 400, "model is required");
        return;
    }
    struct sim_model *m = model_find(name);
    if (!m) {
        char msg[SIM_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "model '%s' not found", name);
        req_error(r, 404, msg);
        return;
    }
    show_json(&r->h.out, m);
    req_json_ok(r);
    req_ready(r);
}

static void progress_line(struct sbuf *b, const char *status, const char *digest, int64_t total,
                          int64_t completed)
{
    sb_puts(b, "{\"status\":");
    sb_json_str(b, status);
    if (digest) {
        sb_puts(b, ",\"digest\":");
        sb_json_str(b, digest);
    }
    if (total) {
        sb_puts(b, ",\"total\":");
        sb_i64(b, total);
    }
    if (completed) {
        sb_puts(b, ",\"completed\":");
        sb_i64(b, completed);
    }
    sb_puts(b, "}\n");
}

static int stream_flag(const cJSON *j)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "stream");
    return !(cJSON_IsBool(s) && !cJSON_IsTrue(s));
}

/* Sends r->lines as a stream, or only its last line when stream is false
 * (Ollama's waitForStream answers the final progress object). */
static void finish_progress(struct sim_req *r, int stream)
{
    if (stream) {
        stream_lines_start(r);
        return;
    }
    const char *p = r->lines.p;
    size_t n = r->lines.len;
    if (n && p[n - 1] == '\n')
        n--;
    size_t start = n;
    while (start > 0 && p[start - 1] != '\n')
        start--;
    r->h.out.len = 0;
    sb_put(&r->h.out, p + start, n - start);
    r->h.status = 200;
    r->h.ctype = "application/json";
    req_ready(r);
}

static void handle_pull(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.PullRequest", 0);
    if (!j)
        return;
    const char *name = json_str(j, "model");
    if (!name || !*name)
        name = json_str(j, "name");
    struct mname n;
    if (!name || !mname_parse(name, &n)) {
        req_error(r, 400, "invalid model name");
        return;
    }
    struct sim_model *m = model_find(name);
    if (!m) {
        char err[256];
        m = model_install_spec(name, 1, err, sizeof err);
        if (!m) {
            req_error(r, 400, "invalid model name");
            return;
        }
        SOL_INFO("pulled %s", m->display);
    }
    char status[64], digest[80];
    snprintf(status, sizeof status, "pulling %.12s", m->digest);
    snprintf(digest, sizeof digest, "sha256:%s", m->digest);
    struct sbuf *b = &r->lines;
    progress_line(b, "pulling manifest", NULL, 0, 0);
    progress_line(b, status, digest, m->size, 0);
    progress_line(b, status, digest, m->size, m->size / 2);
    progress_line(b, status, digest, m->size, m->size);
    progress_line(b, "verifying sha256 digest", NULL, 0, 0);
    progress_line(b, "writing manifest", NULL, 0, 0);
    progress_line(b, "success", NULL, 0, 0);
    finish_progress(r, stream_flag(j));
}

static void handle_push(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.PushRequest", 0);
    if (!j)
        return;
    const char *name = json_str(j, "model");
    if (!name || !*name)
        name = json_str(j, "name");
    if (!name || !*name) {
        req_error(r, 400, "model is required");
        return;
    }
    struct sim_model *m = model_find(name);
    if (!m) {
        /* PushModel reports progress before it opens the manifest, so a
         * streamed push of a missing model is a 200 whose last line is the
         * error; waitForStream (stream:false) answers 500 application/json. */
        struct mname n;
        char msg[SIM_NAME_MAX * 4 + 96];
        if (mname_parse(name, &n))
            snprintf(msg, sizeof msg,
                     "open /usr/share/ollama/.ollama/models/manifests/%s/%s/%s/%s: no such file "
                     "or directory",
                     n.host, n.ns, n.model, n.tag);
        else
            snprintf(msg, sizeof msg, "unqualified name: %s", name);
        if (!stream_flag(j)) {
            r->h.out.len = 0;
            sb_puts(&r->h.out, "{\"error\":");
            sb_json_str(&r->h.out, msg);
            sb_putc(&r->h.out, '}');
            r->h.status = 500;
            r->h.ctype = "application/json";
            req_ready(r);
            return;
        }
        struct sbuf *b = &r->lines;
        progress_line(b, "retrieving manifest", NULL, 0, 0);
        progress_line(b, "couldn't retrieve manifest", NULL, 0, 0);
        sb_puts(b, "{\"error\":");
        sb_json_str(b, msg);
        sb_puts(b, "}\n");
        stream_lines_start(r);
        return;
    }
    char status[64], digest[80];
    snprintf(status, sizeof status, "pushing %.12s", m->digest);
    snprintf(digest, sizeof digest, "sha256:%s", m->digest);
    struct sbuf *b = &r->lines;
    progress_line(b, "retrieving manifest", NULL, 0, 0);
    progress_line(b, status, digest, m->size, m->size);
    progress_line(b, "pushing manifest", NULL, 0, 0);
    progress_line(b, "success", NULL, 0, 0);
    finish_progress(r, stream_flag(j));
}

static void handle_create(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.CreateRequest", 0);
    if (!j)
        return;
    const char *name = json_str(j, "model");
    if (!name || !*name)
        name = json_str(j, "name");
    struct mname n;
    if (!name || !mname_parse(name, &n)) {
        req_error(r, 400, "invalid model name");
        return;
    }
    const char *from = json_str(j, "from");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
    if ((!from || !*from) && !cJSON_IsObject(files)) {
        req_error(r, 400, "neither 'from' or 'files' was specified");
        return;
    }
    struct sim_model *m;
    char err[256];
    struct sbuf *b = &r->lines;
    if (from && *from) {
        struct sim_model *src = model_find(from);
        if (!src) {
            char msg[SIM_NAME_MAX + 32];
            snprintf(msg, sizeof msg, "model '%s' not found", from);
            req_error(r, 404, msg);
            return;
        }
        progress_line(b, "reading model metadata", NULL, 0, 0);
        char st[96];
        snprintf(st, sizeof st, "using existing layer sha256:%s", src->digest);
        progress_line(b, st, NULL, 0, 0);
        m = model_copy(src, name);
    } else {
        progress_line(b, "parsing GGUF", NULL, 0, 0);
        m = model_install_spec(name, 1, err, sizeof err);
        if (m) {
            char st[96];
            snprintf(st, sizeof st, "using existing layer sha256:%s", m->digest);
            progress_line(b, st, NULL, 0, 0);
        }
    }
    if (!m) {
        req_error(r, 400, "invalid model name");
        return;
    }
    progress_line(b, "writing manifest", NULL, 0, 0);
    progress_line(b, "success", NULL, 0, 0);
    SOL_INFO("created %s", m->display);
    finish_progress(r, stream_flag(j));
}

static void empty_ok(struct sim_req *r)
{
    r->h.out.len = 0;
    r->h.status = 200;
    r->h.ctype = NULL;
    req_ready(r);
}

static void handle_copy(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.CopyRequest", 0);
    if (!j)
        return;
    const char *src = json_str(j, "source"), *dst = json_str(j, "destination");
    struct mname n;
    char msg[SIM_NAME_MAX + 48];
    if (!src || !mname_parse(src, &n)) {
        snprintf(msg, sizeof msg, "source \"%s\" is invalid", src ? src : "");
        req_error(r, 400, msg);
        return;
    }
    if (!dst || !mname_parse(dst, &n)) {
        snprintf(msg, sizeof msg, "destination \"%s\" is invalid", dst ? dst : "");
        req_error(r, 400, msg);
        return;
    }
    struct sim_model *m = model_find(src);
    if (!m) {
        snprintf(msg, sizeof msg, "model \"%s\" not found", src);
        req_error(r, 404, msg);
        return;
    }
    model_copy(m, dst);
    empty_ok(r);
}

static void handle_delete(struct sim_req *r)
{
    cJSON *j = req_body_object(r, "api.DeleteRequest", 0);
    if (!j)
        return;
    const char *name = json_str(j, "model");
    if (!name || !*name)
        name = json_str(j, "name");
    struct mname n;
    char msg[SIM_NAME_MAX + 48];
    if (!name || !mname_parse(name, &n)) {
        snprintf(msg, sizeof msg, "name \"%s\" is invalid", name ? name : "");
        req_error(r, 400, msg);
        return;
    }
    struct sim_model *m = model_find(name);
    if (!m) {
        snprintf(msg, sizeof msg, "model '%s' not found", name);
        req_error(r, 404, msg);
        return;
    }
    model_remove(m);
    SOL_INFO("deleted %s", m->display);
    empty_ok(r);
}

/* `^sha256[:-][0-9a-fA-F]{64}$`; hex copied lower-case. */
static int digest_hex(const char *d, char hex[65])
{
    if (strncmp(d, "sha256", 6) != 0 || (d[6] != ':' && d[6] != '-') || strlen(d) != 71)
        return 0;
    for (int i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)d[7 + i]))
            return 0;
        hex[i] = (char)tolower((unsigned char)d[7 + i]);
    }
    hex[64] = 0;
    return 1;
}

static int blob_exists(const char *hex)
{
    for (size_t i = 0; i < g_nblobs; i++)
        if (strcmp(g_blobs[i], hex) == 0)
            return 1;
    return 0;
}

static void handle_blob(struct sim_req *r)
{
    char hex[65];
    if (!digest_hex(r->param, hex)) {
        req_error(r, 400, "invalid digest format");
        return;
    }
    if (r->route == R_BLOB_HEAD) {
        if (blob_exists(hex)) {
            empty_ok(r);
        } else {
            char msg[SIM_NAME_MAX + 32];
            snprintf(msg, sizeof msg, "blob \"%s\" not found", r->param);
            req_error(r, 404, msg);
        }
        return;
    }
    if (blob_exists(hex)) {
        empty_ok(r);
        return;
    }
    unsigned char digest[SOL_SHA256_LEN];
    char got[65];
    sol_sha256_final(&r->sha, digest);
    sol_sha256_to_hex(digest, got);
    char want[80], have[80];
    str_copy(want, sizeof want, r->param);
    snprintf(have, sizeof have, "sha256:%s", got);
    /* Ollama compares the path parameter with "sha256:<hex>" verbatim. */
    if (strcmp(want, have) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "digest mismatch, expected \"%s\", got \"%s\"", want, have);
        req_error(r, 400, msg);
        return;
    }
    if (g_nblobs == g_blob_cap) {
        size_t cap = g_blob_cap ? g_blob_cap * 2 : 16;
        char(*nb)[65] = realloc(g_blobs, cap * sizeof *nb);
        if (!nb)
            abort();
        g_blobs = nb;
        g_blob_cap = cap;
    }
    memcpy(g_blobs[g_nblobs++], hex, 65);
    r->h.out.len = 0;
    r->h.status = 201;
    r->h.ctype = NULL;
    req_ready(r);
}

void api_free(void)
{
    free(g_blobs);
    g_blobs = NULL;
    g_nblobs = g_blob_cap = 0;
}

/* OpenAI: GET /v1/models and /v1/models/:model. */
static void handle_v1_models(struct sim_req *r)
{
    struct sbuf *b = &r->h.out;
    if (r->route == R_V1_MODEL) {
        struct sim_model *m = model_find(r->param);
        if (!m) {
            char msg[SIM_NAME_MAX + 32];
            snprintf(msg, sizeof msg, "model '%s' not found", r->param);
            req_error(r, 404, msg);
            return;
        }
        struct mname n;
        mname_parse(r->param, &n);
        sb_puts(b, "{\"id\":");
        sb_json_str(b, r->param);
        sb_puts(b, ",\"object\":\"model\",\"created\":");
        sb_i64(b, m->modified_sec);
        sb_puts(b, ",\"owned_by\":");
        sb_json_str(b, n.ns);
        sb_puts(b, "}\n");
    } else {
        struct sim_model **v;
        size_t n = sorted_models(&v);
        sb_puts(b, "{\"object\":\"list\",\"data\":");
        if (n == 0)
            sb_puts(b, "null"); /* a nil Go slice */
        else
            sb_putc(b, '[');
        for (size_t i = 0; i < n; i++) {
            struct mname nm;
            mname_parse(v[i]->display, &nm);
            if (i)
                sb_putc(b, ',');
            sb_puts(b, "{\"id\":");
            sb_json_str(b, v[i]->display);
            sb_puts(b, ",\"object\":\"model\",\"created\":");
            sb_i64(b, v[i]->modified_sec);
            sb_puts(b, ",\"owned_by\":");
            sb_json_str(b, nm.ns);
            sb_putc(b, '}');
        }
        if (n)
            sb_putc(b, ']');
        sb_puts(b, "}\n");
        free(v);
    }
    r->h.status = 200;
    r->h.ctype = "application/json";
    req_ready(r);
}

void api_handle(struct sim_req *r)
{
    r->h.out.len = 0;
    switch (r->route) {
    case R_ROOT:
        sb_puts(&r->h.out, "Ollama is running");
        r->h.status = 200;
        r->h.ctype = "text/plain; charset=utf-8";
        req_ready(r);
        break;
    case R_VERSION:
        sb_puts(&r->h.out, "{\"version\":");
        sb_json_str(&r->h.out, g_sim.cfg.version);
        sb_putc(&r->h.out, '}');
        req_json_ok(r);
        req_ready(r);
        break;
    case R_STATUS:
        /* api.StatusResponse: cloud models on (no OLLAMA_NO_CLOUD, no
         * server config disabling them). */
        sb_puts(&r->h.out, "{\"cloud\":{\"disabled\":false,\"source\":\"none\"}}");
        req_json_ok(r);
        req_ready(r);
        break;
    case R_TAGS:
        handle_tags(r);
        break;
    case R_PS:
        handle_ps(r);
        break;
    case R_SHOW:
        handle_show(r);
        break;
    case R_PULL:
        handle_pull(r);
        break;
    case R_PUSH:
        handle_push(r);
        break;
    case R_CREATE:
        handle_create(r);
        break;
    case R_COPY:
        handle_copy(r);
        break;
    case R_DELETE:
        handle_delete(r);
        break;
    case R_BLOB_HEAD:
    case R_BLOB_POST:
        handle_blob(r);
        break;
    case R_ME:
        req_error(r, 401, "unauthorized");
        break;
    case R_SIGNOUT:
    case R_USER_KEYS:
        req_error(r, 401, "you are not currently signed in");
        break;
    case R_V1_MODELS:
    case R_V1_MODEL:
        handle_v1_models(r);
        break;
    default:
        req_error(r, 404, "not found");
        break;
    }
}
