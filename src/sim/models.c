/*
 * models.c - the simulated node's model store and scheduler.
 *
 * Models are installed from --model specs or at run time (pull, create,
 * copy, /_sim/models). A model struct is never freed before exit, even when
 * the model is removed (installed = 0), so requests in flight can keep a
 * pointer to it.
 *
 * Scheduling mirrors Ollama: a model must be loaded (--load-ms) before it
 * serves; each loaded model has --parallel slots; requests beyond that wait
 * in FIFO order (bounded by --max-queue over all models). An idle model
 * unloads when its keep-alive expires, right away for keep_alive 0, or when
 * another model needs its place under --max-loaded (least recently used
 * idle model first). Each slot remembers the prompt it processed last so a
 * request that shares a prefix only pays for the uncached part.
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sollol/log.h"

#define DEFAULT_HOST "registry.ollama.ai"
#define DEFAULT_NS   "library"
#define DEFAULT_TAG  "latest"
#define MISSING      "!MISSING!"

static struct sim_model *g_models;
static uv_loop_t *g_loop;
static uint64_t g_use_seq;
static int g_waiting;

/* ---- names (Ollama's types/model/name.go) ---- */

static void copy_part(char *dst, const char *s, size_t n)
{
    if (n >= SIM_NAME_MAX)
        n = SIM_NAME_MAX - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

/* Splits s[0..*len) at the last `sep`: the part after it goes to `after`
 * (MISSING when empty) and *len shrinks to the part before. Returns 0 when
 * sep does not occur. */
static int cut_last(const char *s, size_t *len, char sep, char *after)
{
    size_t i = *len;
    while (i > 0 && s[i - 1] != sep)
        i--;
    if (i == 0)
        return 0;
    size_t alen = *len - i;
    if (alen == 0)
        strcpy(after, MISSING);
    else
        copy_part(after, s + i, alen);
    *len = i - 1;
    return 1;
}

static int valid_part(int kind, const char *s)
{
    /* kind: 0 host, 1 namespace, 2 model, 3 tag */
    size_t n = strlen(s);
    if (n < 1 || n > (kind == 0 ? 350u : 80u))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = isalnum(c) || c == '_';
        if (i == 0) {
            if (!alnum)
                return 0;
            continue;
        }
        if (alnum || c == '-')
            continue;
        if (c == '.' && kind != 1)
            continue;
        if (c == ':' && kind == 0)
            continue;
        return 0;
    }
    return 1;
}

int mname_parse(const char *s, struct mname *n)
{
    memset(n, 0, sizeof *n);
    size_t len = strlen(s);
    const char *lc = strrchr(s, ':'), *ls = strrchr(s, '/');
    /* "/" cannot occur in a tag, so a ":" after the last "/" starts one. */
    if (lc && (!ls || lc > ls))
        cut_last(s, &len, ':', n->tag);
    if (!cut_last(s, &len, '/', n->model)) {
        copy_part(n->model, s, len);
        goto merge;
    }
    if (len == 0) {
        strcpy(n->ns, MISSING);
        goto merge;
    }
    if (!cut_last(s, &len, '/', n->ns)) {
        copy_part(n->ns, s, len);
        goto merge;
    }
    if (len == 0) {
        strcpy(n->host, MISSING);
        goto merge;
    }
    {
        const char *host = s;
        size_t hlen = len;
        for (size_t i = 0; i + 2 < len; i++)
            if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
                host = s + i + 3;
                hlen = len - i - 3;
                break;
            }
        if (hlen == 0)
            strcpy(n->host, MISSING);
        else
            copy_part(n->host, host, hlen);
    }
merge:
    if (!n->host[0])
        strcpy(n->host, DEFAULT_HOST);
    if (!n->ns[0])
        strcpy(n->ns, DEFAULT_NS);
    if (!n->tag[0])
        strcpy(n->tag, DEFAULT_TAG);
    return valid_part(0, n->host) && valid_part(1, n->ns) && valid_part(2, n->model) &&
           valid_part(3, n->tag);
}

void mname_key(const struct mname *n, char *out, size_t outlen)
{
    /* hot path (every request): no snprintf */
    const char *parts[4] = {n->host, n->ns, n->model, n->tag};
    const char seps[4] = {'/', '/', ':', 0};
    size_t o = 0;
    for (int i = 0; i < 4; i++) {
        for (const char *p = parts[i]; *p && o + 1 < outlen; p++)
            out[o++] = (char)tolower((unsigned char)*p);
        if (seps[i] && o + 1 < outlen)
            out[o++] = seps[i];
    }
    out[o] = 0;
}

void mname_display(const struct mname *n, char *out, size_t outlen)
{
    /* A display name longer than out is cut, as the caller's buffer says;
     * the length is checked so gcc -O3 knows the cut is meant. */
    int len;
    if (strcasecmp(n->host, DEFAULT_HOST) != 0)
        len = snprintf(out, outlen, "%s/%s/%s:%s", n->host, n->ns, n->model, n->tag);
    else if (strcasecmp(n->ns, DEFAULT_NS) != 0)
        len = snprintf(out, outlen, "%s/%s:%s", n->ns, n->model, n->tag);
    else
        len = snprintf(out, outlen, "%s:%s", n->model, n->tag);
    if (outlen && (len < 0 || (size_t)len >= outlen))
        out[outlen - 1] = 0;
}

/* ---- store ---- */

static void (*g_on_slot_ready)(struct sim_req *r);

void models_init(uv_loop_t *loop, void (*on_slot_ready)(struct sim_req *r))
{
    g_on_slot_ready = on_slot_ready;
    g_loop = loop;
}

struct sim_model *model_first(void)
{
    return g_models;
}

static struct sim_model *find_key(const char *key)
{
    for (struct sim_model *m = g_models; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

/* Requests name the same few models over and over: remember the last
 * lookups by their exact spelling. Any change to the store clears it. */
#define FIND_CACHE 8
static struct {
    char name[SIM_NAME_MAX];
    struct sim_model *m;
} g_find_cache[FIND_CACHE];
static unsigned g_find_next;

static void find_cache_clear(void)
{
    memset(g_find_cache, 0, sizeof g_find_cache);
}

struct sim_model *model_find(const char *name)
{
    if (!name || !*name)
        return NULL;
    for (int i = 0; i < FIND_CACHE; i++)
        if (g_find_cache[i].m && strcmp(g_find_cache[i].name, name) == 0)
            return g_find_cache[i].m;
    struct mname n;
    if (!mname_parse(name, &n))
        return NULL;
    char key[SIM_NAME_MAX * 4 + 8];
    mname_key(&n, key, sizeof key);
    struct sim_model *m = find_key(key);
    if (!m || !m->installed)
        return NULL;
    if (strlen(name) < SIM_NAME_MAX) {
        unsigned k = g_find_next++ % FIND_CACHE;
        str_copy(g_find_cache[k].name, sizeof g_find_cache[k].name, name);
        g_find_cache[k].m = m;
    }
    return m;
}

static void on_load_timer(uv_timer_t *t);
static void on_expire_timer(uv_timer_t *t);

static struct sim_model *model_get_or_create(const struct mname *n)
{
    char key[SIM_NAME_MAX * 4 + 8];
    mname_key(n, key, sizeof key);
    struct sim_model *m = find_key(key);
    if (m)
        return m;
    m = calloc(1, sizeof *m);
    if (!m)
        abort();
    str_copy(m->key, sizeof m->key, key);
    m->nslots = g_sim.cfg.parallel;
    m->slots = calloc((size_t)m->nslots, sizeof *m->slots);
    if (!m->slots)
        abort();
    m->session_ns = g_sim.cfg.keep_alive_ns;
    uv_timer_init(g_loop, &m->load_timer);
    uv_timer_init(g_loop, &m->expire_timer);
    m->load_timer.data = m;
    m->expire_timer.data = m;
    m->timers_init = 1;
    /* Append so that iteration order is installation order. */
    struct sim_model **pp = &g_models;
    while (*pp)
        pp = &(*pp)->next;
    *pp = m;
    return m;
}

static void default_attrs(struct sim_model *m)
{
    uint64_t h = fnv1a64(FNV64_INIT, m->key, strlen(m->key));
    m->size = (int64_t)(1000000000ULL + mix64(h) % 4000000000ULL);
    snprintf(m->family, sizeof m->family, "llama");
    snprintf(m->params, sizeof m->params, "3.2B");
    snprintf(m->quant, sizeof m->quant, "Q4_K_M");
    uint64_t d = h;
    for (int i = 0; i < 4; i++) {
        d = mix64(d + (uint64_t)i);
        snprintf(m->digest + 16 * i, 17, "%016llx", (unsigned long long)d);
    }
    m->caps[0] = 0;
    m->embed = 0;
    m->ctx = 131072;
    m->dim = 8;
    /* Deterministic modified_at within the year after 2024-06-01. */
    m->modified_sec = 1717200000 + (int64_t)(mix64(h ^ 0x6d6f64) % (365ULL * 86400));
    m->modified_nsec = (long)(mix64(h ^ 0x6e73) % 1000000000ULL);
}

struct sim_model *model_install_spec(const char *spec, int now_modified, char *err, size_t errlen)
{
    char buf[1024];
    str_copy(buf, sizeof buf, spec);
    char *save = NULL;
    char *name = strtok_r(buf, ",", &save);
    struct mname n;
    if (!name || !mname_parse(name, &n)) {
        snprintf(err, errlen, "invalid model name '%s'", name ? name : "");
        return NULL;
    }
    struct sim_model tmp;
    memset(&tmp, 0, sizeof tmp);
    mname_key(&n, tmp.key, sizeof tmp.key);
    default_attrs(&tmp);
    int loaded = 0, embed_set = 0, family_set = 0, params_set = 0, quant_set = 0;
    for (char *a = strtok_r(NULL, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(a, '=');
        char *v = eq ? eq + 1 : NULL;
        if (eq)
            *eq = 0;
        uint64_t u;
        if (strcmp(a, "loaded") == 0 && !v) {
            loaded = 1;
        } else if (strcmp(a, "embed") == 0 && !v) {
            tmp.embed = 1;
            embed_set = 1;
        } else if (strcmp(a, "size") == 0 && v && parse_u64(v, &u) == 0) {
            tmp.size = (int64_t)u;
        } else if (strcmp(a, "family") == 0 && v && *v) {
            str_copy(tmp.family, sizeof tmp.family, v);
            family_set = 1;
        } else if (strcmp(a, "params") == 0 && v && *v) {
            str_copy(tmp.params, sizeof tmp.params, v);
            params_set = 1;
        } else if (strcmp(a, "quant") == 0 && v && *v) {
            str_copy(tmp.quant, sizeof tmp.quant, v);
            quant_set = 1;
        } else if (strcmp(a, "digest") == 0 && v) {
            const char *d = v;
            if (strncmp(d, "sha256:", 7) == 0 || strncmp(d, "sha256-", 7) == 0)
                d += 7;
            size_t dl = strlen(d);
            int ok = dl == 64;
            for (size_t i = 0; ok && i < dl; i++)
                ok = isxdigit((unsigned char)d[i]);
            if (!ok) {
                snprintf(err, errlen, "digest must be 64 hex digits");
                return NULL;
            }
            for (size_t i = 0; i < 64; i++)
                tmp.digest[i] = (char)tolower((unsigned char)d[i]);
            tmp.digest[64] = 0;
        } else if (strcmp(a, "ctx") == 0 && v && parse_u64(v, &u) == 0 && u > 0) {
            tmp.ctx = (int)u;
        } else if (strcmp(a, "dim") == 0 && v && parse_u64(v, &u) == 0 && u > 0 && u <= 8192) {
            tmp.dim = (int)u;
        } else if (strcmp(a, "caps") == 0 && v) {
            str_copy(tmp.caps, sizeof tmp.caps, v);
        } else if (strcmp(a, "modified") == 0 && v && parse_u64(v, &u) == 0) {
            tmp.modified_sec = (int64_t)u;
            tmp.modified_nsec = 0;
        } else {
            snprintf(err, errlen, "unknown model attribute '%s'", a);
            return NULL;
        }
    }
    (void)embed_set;
    if (tmp.embed) {
        if (!family_set)
            snprintf(tmp.family, sizeof tmp.family, "nomic-bert");
        if (!params_set)
            snprintf(tmp.params, sizeof tmp.params, "137M");
        if (!quant_set)
            snprintf(tmp.quant, sizeof tmp.quant, "F16");
    }
    if (!tmp.caps[0])
        str_copy(tmp.caps, sizeof tmp.caps, tmp.embed ? "embedding" : "completion");
    if (now_modified)
        wall_now(&tmp.modified_sec, &tmp.modified_nsec);

    struct sim_model *m = model_get_or_create(&n);
    find_cache_clear();
    mname_display(&n, m->display, sizeof m->display);
    m->installed = 1;
    m->size = tmp.size;
    memcpy(m->family, tmp.family, sizeof m->family);
    memcpy(m->params, tmp.params, sizeof m->params);
    memcpy(m->quant, tmp.quant, sizeof m->quant);
    memcpy(m->digest, tmp.digest, sizeof m->digest);
    memcpy(m->caps, tmp.caps, sizeof m->caps);
    m->embed = tmp.embed;
    m->ctx = tmp.ctx;
    m->dim = tmp.dim;
    m->modified_sec = tmp.modified_sec;
    m->modified_nsec = tmp.modified_nsec;
    if (loaded)
        model_load_now(m);
    return m;
}

struct sim_model *model_copy(struct sim_model *src, const char *dst_name)
{
    struct mname n;
    if (!mname_parse(dst_name, &n))
        return NULL;
    struct sim_model *m = model_get_or_create(&n);
    find_cache_clear();
    if (m == src)
        return m;
    mname_display(&n, m->display, sizeof m->display);
    m->installed = 1;
    m->size = src->size;
    memcpy(m->family, src->family, sizeof m->family);
    memcpy(m->params, src->params, sizeof m->params);
    memcpy(m->quant, src->quant, sizeof m->quant);
    memcpy(m->digest, src->digest, sizeof m->digest);
    memcpy(m->caps, src->caps, sizeof m->caps);
    m->embed = src->embed;
    m->ctx = src->ctx;
    m->dim = src->dim;
    wall_now(&m->modified_sec, &m->modified_nsec);
    return m;
}

static void unload(struct sim_model *m);

int model_remove(struct sim_model *m)
{
    if (!m || !m->installed)
        return -1;
    m->installed = 0;
    find_cache_clear();
    if (m->state != M_UNLOADED) {
        if (m->active == 0 && m->queue.n == 0)
            unload(m);
        else
            m->unload_when_idle = 1;
    }
    return 0;
}

int models_loaded_count(void)
{
    int n = 0;
    for (struct sim_model *m = g_models; m; m = m->next)
        if (m->state != M_UNLOADED)
            n++;
    return n;
}

int models_waiting_total(void)
{
    return g_waiting;
}

void models_reset_stats(void)
{
    for (struct sim_model *m = g_models; m; m = m->next)
        m->max_active = m->active;
}

/* ---- load / unload ---- */

static void clear_slot_caches(struct sim_model *m)
{
    for (int i = 0; i < m->nslots; i++) {
        m->slots[i].cache_kind = 0;
        m->slots[i].nmsg = 0;
        m->slots[i].bytes.len = 0;
    }
}

static void try_pending_loads(void);
static void dispatch_queue(struct sim_model *m);

static void unload(struct sim_model *m)
{
    if (m->state == M_UNLOADED)
        return;
    SOL_INFO("unloading %s", m->display);
    uv_timer_stop(&m->load_timer);
    uv_timer_stop(&m->expire_timer);
    m->state = M_UNLOADED;
    m->unload_when_idle = 0;
    clear_slot_caches(m);
    try_pending_loads();
}

static int is_idle(const struct sim_model *m)
{
    return m->state == M_LOADED && m->active == 0 && m->queue.n == 0;
}

/* Makes room for one more loaded model; returns 0 when none can be made. */
static int make_room(struct sim_model *except)
{
    int max = g_sim.cfg.max_loaded;
    if (max <= 0)
        return 1;
    while (models_loaded_count() >= max) {
        struct sim_model *lru = NULL;
        for (struct sim_model *m = g_models; m; m = m->next)
            if (m != except && is_idle(m) && (!lru || m->last_used < lru->last_used))
                lru = m;
        if (!lru)
            return 0;
        SOL_INFO("evicting %s to make room for %s", lru->display, except->display);
        unload(lru);
    }
    return 1;
}

static void became_idle(struct sim_model *m);

static void finish_load(struct sim_model *m)
{
    m->state = M_LOADED;
    m->loaded_at_ns = now_ns();
    m->last_used = ++g_use_seq;
    SOL_INFO("loaded %s in %.1f ms", m->display,
             (double)(m->loaded_at_ns - m->load_started_ns) / 1e6);
    dispatch_queue(m);
    if (is_idle(m))
        became_idle(m); /* loaded for nobody (the waiters went away) */
}

static void on_load_timer(uv_timer_t *t)
{
    struct sim_model *m = t->data;
    if (m->state == M_LOADING)
        finish_load(m);
}

/* Starts loading; returns 1 when the model is loaded right now. */
static int start_load(struct sim_model *m)
{
    if (m->state != M_UNLOADED)
        return m->state == M_LOADED;
    if (!make_room(m))
        return 0; /* retried by try_pending_loads when a model goes idle */
    m->load_started_ns = now_ns();
    m->state = M_LOADING;
    clear_slot_caches(m);
    if (g_sim.cfg.load_ms <= 0) {
        m->state = M_LOADED;
        m->loaded_at_ns = m->load_started_ns;
        m->last_used = ++g_use_seq;
        return 1;
    }
    SOL_INFO("loading %s", m->display);
    uv_timer_start(&m->load_timer, on_load_timer, (uint64_t)(g_sim.cfg.load_ms + 0.5), 0);
    return 0;
}

static void try_pending_loads(void)
{
    for (struct sim_model *m = g_models; m; m = m->next)
        if (m->state == M_UNLOADED && m->queue.n > 0)
            if (start_load(m))
                dispatch_queue(m);
}

void model_load_now(struct sim_model *m)
{
    if (m->state == M_LOADED)
        return;
    uv_timer_stop(&m->load_timer);
    if (m->state == M_UNLOADED)
        make_room(m); /* best effort: an explicit load may exceed the limit */
    m->load_started_ns = now_ns();
    if (m->state == M_UNLOADED)
        clear_slot_caches(m);
    m->state = M_LOADING;
    finish_load(m);
}

void model_request_unload(struct sim_model *m)
{
    if (m->state == M_UNLOADED)
        return;
    if (m->state == M_LOADED && m->active == 0 && m->queue.n == 0)
        unload(m);
    else
        m->unload_when_idle = 1;
}

static void on_expire_timer(uv_timer_t *t)
{
    struct sim_model *m = t->data;
    if (is_idle(m)) {
        SOL_INFO("keep-alive expired for %s", m->display);
        unload(m);
    }
}

static void became_idle(struct sim_model *m)
{
    m->expires_ns = 0;
    if (m->unload_when_idle || m->session_ns == 0) {
        unload(m);
        return;
    }
    /* Someone is waiting for a place under --max-loaded: give up ours. */
    if (g_sim.cfg.max_loaded > 0 && models_loaded_count() >= g_sim.cfg.max_loaded)
        for (struct sim_model *o = g_models; o; o = o->next)
            if (o != m && o->state == M_UNLOADED && o->queue.n > 0) {
                unload(m);
                return;
            }
    if (m->session_ns > 0) {
        m->expires_ns = now_ns() + (uint64_t)m->session_ns;
        uint64_t ms = (uint64_t)m->session_ns / 1000000;
        uv_timer_start(&m->expire_timer, on_expire_timer, ms, 0);
    }
}

/* ---- slots, queue and prompt cache ---- */

static size_t common_prefix(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static size_t slot_prefix_bytes(const struct sim_slot *s, const struct sim_req *r)
{
    if (r->nmsg > 0 && s->cache_kind == 1) {
        size_t bytes = 0;
        for (size_t i = 0; i < r->nmsg && i < s->nmsg; i++) {
            if (r->msg_hash[i] != s->msg_hash[i])
                break;
            bytes += r->msg_len[i];
        }
        return bytes;
    }
    if (r->nmsg == 0 && r->prompt && s->cache_kind == 2)
        return common_prefix(r->prompt, r->prompt_len, s->bytes.p, s->bytes.len);
    return 0;
}

int slot_match_prefix(struct sim_model *m, int slot, struct sim_req *r)
{
    size_t bytes = slot_prefix_bytes(&m->slots[slot], r);
    int cached = (int)(bytes / 4);
    if (cached > r->prompt_tokens - 1)
        cached = r->prompt_tokens - 1; /* at least one token is always evaluated */
    return cached < 0 ? 0 : cached;
}

void slot_store(struct sim_model *m, int slot, struct sim_req *r)
{
    struct sim_slot *s = &m->slots[slot];
    if (r->nmsg > 0) {
        size_t need = r->nmsg + 1;
        if (need > s->msg_cap) {
            size_t cap = need * 2;
            uint64_t *h = realloc(s->msg_hash, cap * sizeof *h);
            uint32_t *l = realloc(s->msg_len, cap * sizeof *l);
            if (!h || !l)
                abort();
            s->msg_hash = h;
            s->msg_len = l;
            s->msg_cap = cap;
        }
        memcpy(s->msg_hash, r->msg_hash, r->nmsg * sizeof *r->msg_hash);
        memcpy(s->msg_len, r->msg_len, r->nmsg * sizeof *r->msg_len);
        /* The reply is in the KV cache too: a follow-up turn that repeats it
         * hits the cache, as with a real runner. */
        uint64_t h = fnv1a64(FNV64_INIT, "assistant", 9);
        h = fnv1a64(h, "", 1);
        h = fnv1a64(h, r->text.p ? r->text.p : "", r->text.len);
        s->msg_hash[r->nmsg] = h;
        s->msg_len[r->nmsg] = (uint32_t)r->text.len;
        s->nmsg = r->nmsg + 1;
        s->cache_kind = 1;
    } else if (r->prompt) {
        s->bytes.len = 0;
        sb_put(&s->bytes, r->prompt, r->prompt_len);
        if (r->text.len)
            sb_put(&s->bytes, r->text.p, r->text.len);
        s->cache_kind = 2;
    }
}

static int pick_slot(struct sim_model *m, struct sim_req *r)
{
    int best = -1;
    size_t best_bytes = 0;
    for (int i = 0; i < m->nslots; i++) {
        struct sim_slot *s = &m->slots[i];
        if (s->busy)
            continue;
        size_t b = slot_prefix_bytes(s, r);
        if (best < 0 || b > best_bytes ||
            (b == best_bytes && s->last_used < m->slots[best].last_used)) {
            best = i;
            best_bytes = b;
        }
    }
    return best;
}

static void take_slot(struct sim_model *m, struct sim_req *r, int slot)
{
    m->slots[slot].busy = 1;
    m->slots[slot].last_used = ++g_use_seq;
    m->active++;
    if (m->active > m->max_active)
        m->max_active = m->active;
    m->last_used = g_use_seq;
    r->slot = slot;
    r->t_slot = now_ns();
    if (!r->t_loaded) /* the model was ready when the request got here */
        r->t_loaded = r->t_slot;
    m->session_ns = r->session_given ? r->session_ns : g_sim.cfg.keep_alive_ns;
    m->expires_ns = 0;
    uv_timer_stop(&m->expire_timer);
}

static void queue_push(struct sim_model *m, struct sim_req *r)
{
    r->q_next = NULL;
    r->q_prev = m->queue.tail;
    if (m->queue.tail)
        m->queue.tail->q_next = r;
    else
        m->queue.head = r;
    m->queue.tail = r;
    m->queue.n++;
    r->q_model = m;
    g_waiting++;
}

static void queue_remove(struct sim_req *r)
{
    struct sim_model *m = r->q_model;
    if (!m)
        return;
    if (r->q_prev)
        r->q_prev->q_next = r->q_next;
    else
        m->queue.head = r->q_next;
    if (r->q_next)
        r->q_next->q_prev = r->q_prev;
    else
        m->queue.tail = r->q_prev;
    m->queue.n--;
    r->q_model = NULL;
    r->q_next = r->q_prev = NULL;
    g_waiting--;
}

static void dispatch_queue(struct sim_model *m)
{
    if (m->dispatching)
        return; /* the outer call keeps looping */
    m->dispatching = 1;
    while (m->state == M_LOADED && m->queue.head) {
        struct sim_req *r = m->queue.head;
        if (!r->t_loaded)
            r->t_loaded = m->loaded_at_ns > r->t_recv ? m->loaded_at_ns : now_ns();
        int slot = pick_slot(m, r);
        if (slot < 0)
            break;
        queue_remove(r);
        take_slot(m, r, slot);
        g_on_slot_ready(r);
    }
    m->dispatching = 0;
}

int model_acquire(struct sim_model *m, struct sim_req *r)
{
    r->slot = -1;
    r->model = m;
    if (m->state == M_LOADED && !m->queue.head) {
        int slot = pick_slot(m, r);
        if (slot >= 0) {
            take_slot(m, r, slot);
            return 1;
        }
    }
    if (g_waiting >= g_sim.cfg.max_queue)
        return -1;
    if (m->state == M_UNLOADED && start_load(m) && !m->queue.head) {
        /* --load-ms 0: loaded on the spot, every slot is free */
        int slot = pick_slot(m, r);
        if (slot >= 0) {
            take_slot(m, r, slot);
            return 1;
        }
    }
    queue_push(m, r);
    if (m->state == M_LOADED)
        dispatch_queue(m); /* may start r right away (on_slot_ready) */
    return 0;
}

void model_release(struct sim_req *r)
{
    if (r->q_model) {
        struct sim_model *m = r->q_model;
        queue_remove(r);
        if (is_idle(m))
            became_idle(m);
    }
    if (r->slot >= 0 && r->model) {
        struct sim_model *m = r->model;
        m->slots[r->slot].busy = 0;
        m->slots[r->slot].last_used = ++g_use_seq;
        m->last_used = g_use_seq;
        m->active--;
        r->slot = -1;
        dispatch_queue(m);
        if (is_idle(m))
            became_idle(m);
    }
}

/* ---- shutdown ---- */

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void models_shutdown(void)
{
    for (struct sim_model *m = g_models; m; m = m->next) {
        if (m->timers_init) {
            uv_close((uv_handle_t *)&m->load_timer, on_timer_closed);
            uv_close((uv_handle_t *)&m->expire_timer, on_timer_closed);
            m->timers_init = 0;
        }
    }
}

void models_free(void)
{
    while (g_models) {
        struct sim_model *m = g_models;
        g_models = m->next;
        for (int i = 0; i < m->nslots; i++) {
            free(m->slots[i].msg_hash);
            free(m->slots[i].msg_len);
            sb_free(&m->slots[i].bytes);
        }
        free(m->slots);
        free(m);
    }
}
