/*
 * health.c - active probes of every node (see health.h).
 */
#include "nodes/health.h"

#include "base/breaker.h"
#include "sollol/buf.h"
#include "sollol/container_of.h"
#include "sollol/leg.h"
#include "sollol/log.h"
#include "base/model_name.h"
#include "base/scorer.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS          100
#define PROBE_BODY_LIMIT (8u << 20) /* a /api/tags of thousands of models still fits */
#define RTT_ALPHA        0.3

enum probe_kind { PROBE_VERSION = 0, PROBE_PS, PROBE_TAGS, PROBE_KINDS };

static const char *const probe_paths[PROBE_KINDS] = {"/api/version", "/api/ps", "/api/tags"};

struct sol_health_probe {
    struct sol_health *h;
    struct sol_node *node;
    enum probe_kind kind;
    struct sol_leg up; /* body: the answer of the probe */
    int done_once;     /* finished at least once (for the first round) */
    uint64_t due_ms;   /* next start */
    int too_big;
    uint64_t started_seq;              /* h->seq when it last started */
    struct sol_health_waiter *waiters; /* sol_health_refresh(): waiting for a fresh answer */
};

static uint64_t now_ms(struct sol_health *h)
{
    return uv_now(h->loop);
}

/* splitmix64: jitter only, no quality needed beyond "not lock-step". */
static uint64_t next_rand(struct sol_health *h)
{
    uint64_t z = (h->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t jittered(struct sol_health *h, unsigned interval)
{
    uint64_t span = interval / 5 + 1; /* +-10% */
    return interval - interval / 10 + next_rand(h) % span;
}

int sol_parse_rfc3339_ms(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int year, mon, day, hh, mm, ss, used = 0;
    /* Digits exactly where they belong: sscanf would also take signs and
     * spaces ("2024-06-04T-1: 5:00"). */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (int i = 0; s && i < 19; i++)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return -1;
    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hh, &mm, &ss, &used) != 6 ||
        used != 19)
        return -1;
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    const char *p = s + used;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* Exactly "+HH:MM": sscanf alone would also take "+1:2" (and then
         * p += 6 would step past the terminator). */
        for (int i = 1; i <= 5; i++)
            if (i == 3 ? p[i] != ':' : !(p[i] >= '0' && p[i] <= '9'))
                return -1;
        int oh = (p[1] - '0') * 10 + (p[2] - '0'), om = (p[4] - '0') * 10 + (p[5] - '0');
        if (oh > 23 || om > 59)
            return -1;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    int64_t secs = (int64_t)timegm(&tm) - (int64_t)offset_min * 60;
    *out = secs * 1000 + ms;
    return 0;
}

/* Canonical name of a /api/tags or /api/ps entry ("name", else "model"). */
static int entry_name(const cJSON *item, char *out, size_t len)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    if (!cJSON_IsString(name))
        name = cJSON_GetObjectItemCaseSensitive(item, "model");
    if (!cJSON_IsString(name))
        return -1;
    return sol_model_canonical(name->valuestring, out, len);
}

static uint64_t number_u64(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return 0;
    /* A node may send 1e300: converting that is undefined behaviour. */
    return v->valuedouble >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)v->valuedouble;
}

/* Parses a {"models": [...]} answer (Ollama may send null for an empty
 * list). Returns the document (cJSON_Delete it) with *models set (NULL for
 * an empty list), or NULL when the body is not of that shape. */
static cJSON *parse_models(const char *body, size_t len, const cJSON **models)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!root || !(cJSON_IsArray(list) || cJSON_IsNull(list))) {
        cJSON_Delete(root);
        return NULL;
    }
    *models = cJSON_IsNull(list) ? NULL : list;
    return root;
}

/* Canonical name of one list item; -1 to skip the item. */
static int item_name(const cJSON *item, char *name, size_t len)
{
    if (!cJSON_IsObject(item) || entry_name(item, name, len) < 0)
        return -1;
    return 0;
}

static void apply_tags_item(struct sol_node_model *m, const cJSON *item)
{
    m->installed = 1;
    m->gone = 0;
    m->size = number_u64(item, "size");
    const cJSON *digest = cJSON_GetObjectItemCaseSensitive(item, "digest");
    if (cJSON_IsString(digest)) {
        const char *d = digest->valuestring;
        if (strncmp(d, "sha256:", 7) == 0)
            d += 7;
        snprintf(m->digest, sizeof m->digest, "%s", d);
    }
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(item, "modified_at");
    int64_t ms;
    if (cJSON_IsString(mod) && sol_parse_rfc3339_ms(mod->valuestring, &ms) == 0)
        m->modified_at_ms = ms;
    char *text = cJSON_PrintUnformatted(item);
    if (text) {
        free(m->tags_entry);
        m->tags_entry = text;
    }
}

static void apply_ps_item(struct sol_node_model *m, const cJSON *item)
{
    m->loaded = 1;
    m->size_vram = number_u64(item, "size_vram");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(item, "expires_at");
    int64_t ms;
    m->expires_at_ms =
        cJSON_IsString(exp) && sol_parse_rfc3339_ms(exp->valuestring, &ms) == 0 ? ms : 0;
    char *text = cJSON_PrintUnformatted(item);
    if (text) {
        free(m->ps_entry);
        m->ps_entry = text;
    }
}

/*
 * Applies one list (tags: is_tags = 1, else ps) in three steps, so a node
 * at its cap that replaces its names still gets the new ones: the entries
 * it lists again are updated; the entries it no longer lists (and that no
 * other list or running request holds) are dropped; then new names are
 * added while the node has fewer than max_models, the rest counted in
 * n->models_dropped.
 */
static int apply_list(struct sol_node *n, const char *body, size_t len, unsigned max_models,
                      int is_tags)
{
    const cJSON *models;
    cJSON *root = parse_models(body, len, &models);
    if (!root)
        return -1;
    if (!max_models)
        max_models = SOL_NODE_MAX_MODELS_DEFAULT;
    for (unsigned i = 0; i < n->n_models; i++) {
        if (is_tags)
            n->models[i].installed = 0;
        else
            n->models[i].loaded = 0;
    }
    char name[SOL_MODEL_NAME_MAX];
    const cJSON *item;
    unsigned fresh = 0;
    cJSON_ArrayForEach(item, models)
    {
        if (item_name(item, name, sizeof name) < 0)
            continue;
        struct sol_node_model *m = sol_node_find_model(n, sol_model_key(name));
        if (!m) {
            fresh++;
            continue;
        }
        if (is_tags)
            apply_tags_item(m, item);
        else
            apply_ps_item(m, item);
    }
    for (unsigned i = 0; i < n->n_models; i++) {
        struct sol_node_model *m = &n->models[i];
        if (is_tags && !m->installed) {
            free(m->tags_entry);
            m->tags_entry = NULL;
        } else if (!is_tags && !m->loaded) {
            free(m->ps_entry);
            m->ps_entry = NULL;
        }
    }
    sol_node_models_evict(n);
    unsigned dropped = 0;
    if (fresh) {
        cJSON_ArrayForEach(item, models)
        {
            if (item_name(item, name, sizeof name) < 0)
                continue;
            struct sol_node_model *m = sol_node_find_model(n, sol_model_key(name));
            if (m && (is_tags ? m->installed : m->loaded))
                continue; /* updated above, or a duplicate of the list */
            if (!m) {
                if (n->n_models >= max_models) {
                    dropped++;
                    continue;
                }
                if (!(m = sol_node_model_get(n, name)))
                    continue;
            }
            if (is_tags)
                apply_tags_item(m, item);
            else
                apply_ps_item(m, item);
        }
    }
    /* Shrink a list that emptied out (a node that listed thousands once);
     * only here, so a node replacing its names does not shrink and regrow. */
    if (n->cap_models > 64 && n->n_models < n->cap_models / 4) {
        unsigned cap = n->n_models * 2 > 8 ? n->n_models * 2 : 8;
        struct sol_node_model *p = realloc(n->models, cap * sizeof *p);
        if (p) {
            n->models = p;
            n->cap_models = cap;
            if (sol_node_models_reindex(n) < 0) { /* node.c */
                free(n->model_index);
                n->model_index = NULL;
            }
        }
    }
    if (is_tags)
        n->models_dropped = dropped;
    else
        n->ps_models_dropped = dropped;
    cJSON_Delete(root);
    return 0;
}

int sol_health_apply_tags_max(struct sol_node *n, const char *body, size_t len, unsigned max_models)
{
    return apply_list(n, body, len, max_models, 1);
}

int sol_health_apply_ps_max(struct sol_node *n, const char *body, size_t len, unsigned max_models)
{
    return apply_list(n, body, len, max_models, 0);
}

int sol_health_apply_tags(struct sol_node *n, const char *body, size_t len)
{
    return apply_list(n, body, len, 0, 1);
}

int sol_health_apply_ps(struct sol_node *n, const char *body, size_t len)
{
    return apply_list(n, body, len, 0, 0);
}

/* ---- probes ------------------------------------------------------------- */

static void probe_start(struct sol_health *h, struct sol_health_probe *pr);

/* Calls done for the waiters a finished probe answers (every waiter when
 * `all`: the probe will not run for them). One at a time from the head: a
 * done callback may unwait others. */
static void notify_waiters(struct sol_health_probe *pr, int all)
{
    for (;;) {
        struct sol_health_waiter *w = pr->waiters;
        while (w && !all && w->after_seq >= pr->started_seq)
            w = w->next;
        if (!w)
            break;
        sol_health_unwait(w);
        w->done(w);
    }
    if (pr->waiters)
        pr->due_ms = 0; /* asked for after this one started: once more */
}

static void set_state(struct sol_health *h, struct sol_node *n, enum sol_node_state st,
                      const char *why)
{
    if (n->state == st)
        return;
    enum sol_node_state old = n->state;
    n->state = st;
    if (st == SOL_NODE_UP) {
        SOL_INFO("node %s is up (Ollama %s)", n->name, n->version[0] ? n->version : "?");
        /* What it has may have changed while it was away. */
        for (int k = PROBE_PS; k <= PROBE_TAGS; k++) {
            struct sol_health_probe *pr = h->probes[n->index * PROBE_KINDS + (unsigned)k];
            if (!pr->up.running)
                probe_start(h, pr);
        }
    } else if (st == SOL_NODE_MISCONFIGURED) {
        SOL_ERROR("node %s rejects our requests (%s): check its URL and the headers configured "
                  "for it; not routable until it answers",
                  n->name, why);
    } else if (old != SOL_NODE_DOWN) {
        SOL_WARN("node %s is down: %s", n->name, why);
    }
}

static size_t on_probe_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_health_probe *pr = ud;
    size_t n = size * nmemb;
    if (pr->up.body.len + n > PROBE_BODY_LIMIT) {
        pr->too_big = 1;
        return 0;
    }
    return sol_buf_append(&pr->up.body, p, n) < 0 ? 0 : n;
}

static void check_first_round(struct sol_health *h)
{
    if (h->first_round_done)
        return;
    /* Ready when every node answered its version probe, and every node
     * that is up has also told what it has installed and loaded. */
    for (unsigned i = 0; i < h->n_probes; i++) {
        struct sol_health_probe *pr = h->probes[i];
        if (pr->node->external) /* coordinator.c writes its state */
            continue;
        if (!pr->done_once && !pr->node->removed &&
            (pr->kind == PROBE_VERSION || pr->node->state == SOL_NODE_UP))
            return;
    }
    h->first_round_done = 1;
    if (h->on_first_round)
        h->on_first_round(h, h->ud);
}

static void probe_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_health_probe *pr = SOL_CONTAINER_OF(x, struct sol_health_probe, up.xfer);
    struct sol_health *h = pr->h;
    struct sol_node *n = pr->node;
    pr->up.running = 0;
    pr->done_once = 1;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    char why[160];
    why[0] = '\0';
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "GET %s: %s", probe_paths[pr->kind],
                 pr->too_big ? "response too large" : curl_easy_strerror(rc));
    else if (status != 200)
        snprintf(why, sizeof why, "GET %s answered %ld", probe_paths[pr->kind], status);

    if (pr->kind == PROBE_VERSION) {
        if (why[0]) {
            snprintf(n->last_error, sizeof n->last_error, "%s", why);
            set_state(h, n, status == 401 || status == 403 ? SOL_NODE_MISCONFIGURED : SOL_NODE_DOWN,
                      why);
        } else {
            cJSON *root =
                cJSON_ParseWithLength(pr->up.body.data ? pr->up.body.data : "", pr->up.body.len);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
            if (cJSON_IsString(v)) {
                snprintf(n->version, sizeof n->version, "%s", v->valuestring);
                curl_off_t us = 0;
                curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
                double ms = (double)us / 1000.0;
                n->rtt_ms = n->rtt_ms > 0 ? n->rtt_ms + RTT_ALPHA * (ms - n->rtt_ms) : ms;
                n->last_probe_ok_ms = now_ms(h);
                if (sol_breaker_on_probe_ok(&n->breaker, h->breaker_conf, now_ms(h)))
                    SOL_INFO("node %s: circuit breaker closed after a successful probe", n->name);
                set_state(h, n, SOL_NODE_UP, "");
            } else {
                snprintf(n->last_error, sizeof n->last_error,
                         "GET /api/version: not an Ollama answer");
                set_state(h, n, SOL_NODE_DOWN, n->last_error);
            }
            cJSON_Delete(root);
        }
    } else if (!why[0]) {
        int is_tags = pr->kind == PROBE_TAGS;
        unsigned was_dropped = is_tags ? n->models_dropped : n->ps_models_dropped;
        const char *text = pr->up.body.data ? pr->up.body.data : "";
        int ok = apply_list(n, text, pr->up.body.len, h->conf.max_models_per_node, is_tags);
        unsigned dropped = is_tags ? n->models_dropped : n->ps_models_dropped;
        if (ok < 0)
            SOL_WARN("node %s: GET %s: unexpected answer", n->name, probe_paths[pr->kind]);
        else if (is_tags)
            n->tags_at_ms = now_ms(h);
        /* Once when it starts (not at every probe), and once when it ends. */
        if (ok == 0 && dropped && !was_dropped)
            SOL_WARN("node %s: GET %s lists more models than health.max_models_per_node (%u): "
                     "%u names ignored",
                     n->name, probe_paths[pr->kind],
                     h->conf.max_models_per_node ? h->conf.max_models_per_node
                                                 : SOL_NODE_MAX_MODELS_DEFAULT,
                     dropped);
        else if (ok == 0 && !dropped && was_dropped)
            SOL_INFO("node %s: GET %s fits within health.max_models_per_node again", n->name,
                     probe_paths[pr->kind]);
    } else {
        SOL_DEBUG("node %s: %s", n->name, why);
        if (pr->kind == PROBE_TAGS)
            pr->due_ms = now_ms(h) + h->conf.probe_interval_ms; /* retry sooner */
    }
    sol_buf_clear(&pr->up.body);
    notify_waiters(pr, 0);
    check_first_round(h);
}

static void probe_start(struct sol_health *h, struct sol_health_probe *pr)
{
    struct sol_node *n = pr->node;
    CURL *e = pr->up.xfer.easy;
    if (!e && !(e = pr->up.xfer.easy = curl_easy_init()))
        return;
    char url[1024];
    snprintf(url, sizeof url, "%s%s", n->base_url, probe_paths[pr->kind]);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, n->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->conf.probe_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->conf.probe_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_probe_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, pr);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    pr->too_big = 0;
    sol_buf_clear(&pr->up.body);
    pr->started_seq = ++h->seq;
    sol_leg_start(&pr->up, h->curl, probe_done);
}

static void on_tick(uv_timer_t *t)
{
    struct sol_health *h = t->data;
    uint64_t now = now_ms(h);
    for (unsigned i = 0; i < h->n_probes; i++) {
        struct sol_health_probe *pr = h->probes[i];
        /* A node removed by a reload or aged out of discovery is not probed:
         * its state stays down so nothing new is routed to it. The sharded
         * path's node is the coordinator's to watch. */
        if (pr->waiters && !pr->up.running &&
            (pr->node->removed || pr->node->external ||
             (pr->kind == PROBE_PS && pr->node->state != SOL_NODE_UP)))
            notify_waiters(pr, 1); /* no such probe will run for them */
        if (pr->up.running || now < pr->due_ms || pr->node->removed || pr->node->external)
            continue;
        unsigned interval =
            pr->kind == PROBE_TAGS ? h->conf.tags_interval_ms : h->conf.probe_interval_ms;
        pr->due_ms = now + jittered(h, interval);
        /* /api/ps goes with each liveness probe; skip it while the node is
         * down, where it would only fail the same way. */
        if (pr->kind == PROBE_PS) {
            struct sol_health_probe *ver = h->probes[pr->node->index * PROBE_KINDS];
            pr->due_ms = ver->due_ms;
            if (pr->node->state != SOL_NODE_UP)
                continue;
        }
        probe_start(h, pr);
    }
}

int sol_health_start(struct sol_health *h, uv_loop_t *loop, struct sol_curl_uv *curl,
                     struct sol_node_table *table, const struct sol_breaker_conf *bc,
                     const struct sol_health_conf *conf,
                     void (*on_first_round)(struct sol_health *h, void *ud), void *ud)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->curl = curl;
    h->table = table;
    h->breaker_conf = bc;
    h->conf = *conf;
    h->on_first_round = on_first_round;
    h->ud = ud;
    h->rng = uv_hrtime();
    if (sol_health_sync(h) < 0)
        return -1;
    uv_timer_init(loop, &h->tick);
    h->tick.data = h;
    uv_timer_start(&h->tick, on_tick, 0, TICK_MS);
    if (h->n_probes == 0)
        check_first_round(h);
    return 0;
}

int sol_health_refresh(struct sol_health *h, const struct sol_node *node, enum sol_health_kind kind,
                       struct sol_health_waiter *w)
{
    if (!h->probes || h->closing || (node->index + 1) * PROBE_KINDS > h->n_probes ||
        node->removed || node->external || (kind == SOL_HEALTH_PS && node->state != SOL_NODE_UP))
        return -1;
    struct sol_health_probe *pr =
        h->probes[node->index * PROBE_KINDS + (kind == SOL_HEALTH_PS ? PROBE_PS : PROBE_TAGS)];
    if (w) {
        sol_health_unwait(w);
        w->after_seq = h->seq;
        w->next = pr->waiters;
        if (w->next)
            w->next->pprev = &w->next;
        w->pprev = &pr->waiters;
        pr->waiters = w;
    }
    if (pr->up.running) {
        pr->due_ms = 0; /* it may predate the change: once more after it */
        return 0;
    }
    probe_start(h, pr);
    if (!pr->up.running) {
        sol_health_unwait(w);
        return -1;
    }
    return 0;
}

void sol_health_unwait(struct sol_health_waiter *w)
{
    if (!w || !w->pprev)
        return;
    *w->pprev = w->next;
    if (w->next)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

void sol_health_model_installed(struct sol_health *h, struct sol_node *node, const char *canonical)
{
    struct sol_node_model *m = sol_node_model_get(node, canonical);
    if (m) {
        m->installed = 1;
        m->gone = 0;
    }
    sol_health_refresh(h, node, SOL_HEALTH_TAGS, NULL);
}

void sol_health_model_unloaded(struct sol_node *node, uint64_t key)
{
    struct sol_node_model *m = sol_node_find_model(node, key);
    if (!m)
        return;
    m->loaded = 0;
    free(m->ps_entry);
    m->ps_entry = NULL;
}

void sol_health_refresh_tags(struct sol_health *h, const struct sol_node *node)
{
    if (!h->probes || (node->index + 1) * PROBE_KINDS > h->n_probes)
        return;
    h->probes[node->index * PROBE_KINDS + PROBE_TAGS]->due_ms = 0;
}

int sol_health_sync(struct sol_health *h)
{
    unsigned want = h->table->count * PROBE_KINDS;
    if (want <= h->n_probes)
        return 0;
    struct sol_health_probe **p = realloc(h->probes, want * sizeof *p);
    if (!p)
        return -1;
    h->probes = p;
    uint64_t now = uv_now(h->loop);
    while (h->n_probes < want) {
        /* One block per node: a running probe's transfer is embedded in it
         * and registered with the curl glue, so it must never move. */
        struct sol_health_probe *block = calloc(PROBE_KINDS, sizeof *block);
        if (!block)
            return -1;
        for (unsigned k = 0; k < PROBE_KINDS; k++) {
            struct sol_health_probe *pr = &block[k];
            pr->h = h;
            pr->node = h->table->nodes[h->n_probes / PROBE_KINDS];
            pr->kind = (enum probe_kind)k;
            pr->due_ms = now;
            h->probes[h->n_probes + k] = pr;
        }
        h->n_probes += PROBE_KINDS;
    }
    return 0;
}

void sol_health_forget(struct sol_health *h, const struct sol_node *node)
{
    if (!h->probes || (node->index + 1) * PROBE_KINDS > h->n_probes)
        return;
    for (unsigned k = 0; k < PROBE_KINDS; k++) {
        struct sol_health_probe *pr = h->probes[node->index * PROBE_KINDS + k];
        sol_leg_cancel(&pr->up, h->curl);
        notify_waiters(pr, 1);
        pr->due_ms = 0; /* probed at once should it come back */
    }
    check_first_round(h); /* the first round no longer waits for it */
}

static void on_tick_closed(uv_handle_t *handle)
{
    struct sol_health *h = handle->data;
    for (unsigned i = 0; i < h->n_probes; i++) {
        sol_leg_free(&h->probes[i]->up);
    }
    for (unsigned i = 0; i < h->n_probes; i += PROBE_KINDS)
        free(h->probes[i]); /* one block per node */
    free(h->probes);
    h->probes = NULL;
    if (h->on_closed)
        h->on_closed(h);
}

void sol_health_stop(struct sol_health *h, void (*on_closed)(struct sol_health *h))
{
    if (h->closing)
        return;
    h->closing = 1;
    h->on_closed = on_closed;
    for (unsigned i = 0; i < h->n_probes; i++) {
        sol_leg_cancel(&h->probes[i]->up, h->curl);
        /* The requests that waited were aborted before (daemon.c); a
         * waiter left is only let go, the probes' memory goes next. */
        while (h->probes[i]->waiters)
            sol_health_unwait(h->probes[i]->waiters);
    }
    uv_timer_stop(&h->tick);
    uv_close((uv_handle_t *)&h->tick, on_tick_closed);
}
