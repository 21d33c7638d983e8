/*
 * discovery.c - IPv4 range scans for Ollama nodes (see discovery.h).
 */
#include "nodes/discovery.h"

#include "sollol/buf.h"
#include "sollol/container_of.h"
#include "sollol/leg.h"
#include "sollol/log.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANSWER_LIMIT 4096 /* /api/version is a few bytes; anything big is not Ollama */

struct sol_discovery_slot {
    struct sol_discovery *disc;
    struct sol_leg up; /* body: the /api/version answer */
    uint32_t addr;
    int port;
    int too_big;
};

struct sol_discovery_seen {
    uint32_t addr;
    int port;
    uint64_t last_scan; /* the scan (disc->scans + 1 while running) that last confirmed it */
    int lost;           /* reported lost; found again = reported found again */
};

/* ---- scanning ----------------------------------------------------------- */

static void format_url(char *out, size_t n, uint32_t addr, int port)
{
    snprintf(out, n, "http://%u.%u.%u.%u:%d", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255,
             addr & 255, port);
}

/* Ollama answers {"version":"0.12.6"}: digits and dots first, maybe a
 * suffix ("0.5.0-rc1"). */
static int ollama_version(const char *body, size_t len, char *out, size_t outlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    int ok = cJSON_IsObject(root) && cJSON_IsString(v) &&
             isdigit((unsigned char)v->valuestring[0]) && strchr(v->valuestring, '.') != NULL;
    if (ok)
        snprintf(out, outlen, "%s", v->valuestring);
    cJSON_Delete(root);
    return ok;
}

static struct sol_discovery_seen *seen_find(struct sol_discovery *disc, uint32_t addr, int port)
{
    for (size_t i = 0; i < disc->n_seen; i++)
        if (disc->seen[i].addr == addr && disc->seen[i].port == port)
            return &disc->seen[i];
    return NULL;
}

static void confirmed(struct sol_discovery *disc, uint32_t addr, int port, const char *version)
{
    struct sol_discovery_seen *s = seen_find(disc, addr, port);
    if (!s) {
        if (disc->n_seen == disc->cap_seen) {
            size_t cap = disc->cap_seen ? disc->cap_seen * 2 : 16;
            struct sol_discovery_seen *n = realloc(disc->seen, cap * sizeof *n);
            if (!n)
                return; /* found again next scan */
            disc->seen = n;
            disc->cap_seen = cap;
        }
        s = &disc->seen[disc->n_seen++];
        s->addr = addr;
        s->port = port;
    }
    s->last_scan = disc->scans + 1;
    s->lost = 0;
    char url[64];
    format_url(url, sizeof url, addr, port);
    if (disc->on_found)
        disc->on_found(disc->ud, url, version);
}

static void scan_next(struct sol_discovery *disc);

static void slot_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_discovery_slot *s = SOL_CONTAINER_OF(x, struct sol_discovery_slot, up.xfer);
    struct sol_discovery *disc = s->disc;
    s->up.running = 0;
    disc->running--;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    char version[64];
    if (rc == CURLE_OK && status == 200 && !s->too_big &&
        ollama_version(s->up.body.data ? s->up.body.data : "", s->up.body.len, version,
                       sizeof version))
        confirmed(disc, s->addr, s->port, version);
    else if (rc == CURLE_OK)
        SOL_DEBUG("discovery: %u.%u.%u.%u:%d answered but not like Ollama (status %ld)",
                  s->addr >> 24, (s->addr >> 16) & 255, (s->addr >> 8) & 255, s->addr & 255,
                  s->port, status);
    sol_buf_clear(&s->up.body);
    scan_next(disc);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_discovery_slot *s = ud;
    size_t n = size * nmemb;
    if (s->up.body.len + n > ANSWER_LIMIT) {
        s->too_big = 1;
        return 0;
    }
    return sol_buf_append(&s->up.body, p, n) < 0 ? 0 : n;
}

static int slot_start(struct sol_discovery *disc, struct sol_discovery_slot *s, uint32_t addr,
                      int port)
{
    CURL *e = s->up.xfer.easy;
    if (!e && !(e = s->up.xfer.easy = curl_easy_init()))
        return -1;
    char url[96];
    format_url(url, sizeof url, addr, port);
    strcat(url, "/api/version");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)disc->conf.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)disc->conf.timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    /* A scan must not fill the connection cache with hosts it never
     * talks to again. */
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    s->addr = addr;
    s->port = port;
    s->too_big = 0;
    sol_buf_clear(&s->up.body);
    if (sol_leg_start(&s->up, disc->curl, slot_done) < 0)
        return -1;
    disc->running++;
    return 0;
}

static void scan_finished(struct sol_discovery *disc)
{
    disc->scanning = 0;
    disc->scans++;
    for (size_t i = 0; i < disc->n_seen; i++) {
        struct sol_discovery_seen *s = &disc->seen[i];
        if (s->lost || disc->scans - s->last_scan < disc->conf.max_missed)
            continue;
        s->lost = 1;
        char url[64];
        format_url(url, sizeof url, s->addr, s->port);
        if (disc->on_lost)
            disc->on_lost(disc->ud, url);
    }
    SOL_DEBUG("discovery: scan %llu done (%u addresses)", (unsigned long long)disc->scans,
              disc->targets.hosts);
}

/* Fills free slots from the cursor; ends the scan when all are done. */
static void scan_next(struct sol_discovery *disc)
{
    if (disc->closing || !disc->scanning)
        return;
    unsigned limit =
        disc->conf.concurrency < disc->n_slots ? disc->conf.concurrency : disc->n_slots;
    for (unsigned i = 0; i < disc->n_slots && disc->running < limit; i++) {
        struct sol_discovery_slot *s = &disc->slots[i];
        if (s->up.running)
            continue;
        while (disc->range_i < disc->targets.n &&
               disc->offset >= disc->targets.ranges[disc->range_i].count) {
            disc->range_i++;
            disc->offset = 0;
        }
        if (disc->range_i >= disc->targets.n)
            break;
        const struct sol_discovery_range *r = &disc->targets.ranges[disc->range_i];
        uint32_t addr = r->first + disc->offset++;
        if (slot_start(disc, s, addr, r->port) < 0)
            SOL_WARN("discovery: cannot start a transfer to %u.%u.%u.%u", addr >> 24,
                     (addr >> 16) & 255, (addr >> 8) & 255, addr & 255);
    }
    if (disc->running == 0 && disc->range_i >= disc->targets.n)
        scan_finished(disc);
}

static void on_timer(uv_timer_t *t)
{
    struct sol_discovery *disc = t->data;
    if (disc->scanning) /* a scan longer than the interval: let it finish */
        return;
    if (disc->has_pending) {
        sol_discovery_targets_free(&disc->targets);
        disc->targets = disc->pending;
        memset(&disc->pending, 0, sizeof disc->pending);
        disc->has_pending = 0;
    }
    disc->scanning = 1;
    disc->range_i = 0;
    disc->offset = 0;
    scan_next(disc);
}

int sol_discovery_start(struct sol_discovery *disc, uv_loop_t *loop, struct sol_curl_uv *curl,
                        struct sol_discovery_targets *targets, const struct sol_discovery_conf *c,
                        void (*on_found)(void *ud, const char *url, const char *version),
                        void (*on_lost)(void *ud, const char *url), void *ud)
{
    memset(disc, 0, sizeof *disc);
    disc->loop = loop;
    disc->curl = curl;
    disc->conf = *c;
    disc->n_slots = c->concurrency ? c->concurrency : 1;
    disc->slots = calloc(disc->n_slots, sizeof *disc->slots);
    if (!disc->slots)
        return -1;
    for (unsigned i = 0; i < disc->n_slots; i++)
        disc->slots[i].disc = disc;
    disc->targets = *targets;
    memset(targets, 0, sizeof *targets);
    disc->on_found = on_found;
    disc->on_lost = on_lost;
    disc->ud = ud;
    uv_timer_init(loop, &disc->timer);
    disc->timer.data = disc;
    uv_timer_start(&disc->timer, on_timer, 0, c->interval_ms);
    return 0;
}

void sol_discovery_reconfigure(struct sol_discovery *disc, struct sol_discovery_targets *targets,
                               const struct sol_discovery_conf *c)
{
    sol_discovery_targets_free(&disc->pending);
    disc->pending = *targets;
    memset(targets, 0, sizeof *targets);
    disc->has_pending = 1;
    unsigned old_interval = disc->conf.interval_ms;
    disc->conf = *c;
    if (c->interval_ms != old_interval && !disc->closing)
        uv_timer_start(&disc->timer, on_timer, c->interval_ms, c->interval_ms);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sol_discovery *disc = h->data;
    for (unsigned i = 0; i < disc->n_slots; i++) {
        sol_leg_free(&disc->slots[i].up);
    }
    free(disc->slots);
    disc->slots = NULL;
    free(disc->seen);
    disc->seen = NULL;
    sol_discovery_targets_free(&disc->targets);
    sol_discovery_targets_free(&disc->pending);
    if (disc->on_closed)
        disc->on_closed(disc);
}

void sol_discovery_stop(struct sol_discovery *disc, void (*on_closed)(struct sol_discovery *disc))
{
    if (disc->closing)
        return;
    disc->closing = 1;
    disc->on_closed = on_closed;
    for (unsigned i = 0; i < disc->n_slots; i++)
        sol_leg_cancel(&disc->slots[i].up, disc->curl);
    disc->running = 0;
    uv_timer_stop(&disc->timer);
    uv_close((uv_handle_t *)&disc->timer, on_timer_closed);
}
