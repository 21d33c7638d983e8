/*
 * discovery.h - finds Ollama nodes beyond the static list by scanning IPv4
 * ranges on the loop.
 *
 * Targets are "A.B.C.D[/N][:PORT]" entries (comma-separated in text; the
 * config file may give a list). A range without a port uses the default
 * port (discovery.port), so the usual form is "192.168.1.0/24"; a port per
 * entry lets one scan cover nodes on different ports (and lets tests give
 * each simulator on 127.0.0.N its own ephemeral port). /31 and /32 ranges
 * are scanned whole, larger ones without their network and broadcast
 * addresses. At most SOL_DISCOVERY_MAX_HOSTS addresses in all: a /8 is a
 * config error, not a scan that never ends.
 *
 * A scan sends GET http://ADDR:PORT/api/version to every target, at most
 * `concurrency` at once, each bounded by `timeout_ms` (connect and answer
 * together). An address is confirmed only when it answers 200 with a JSON
 * object whose "version" is a version string ("0.12.6"): a web server, a
 * printer or a llama-server answering 404 there is ignored. Confirmed
 * addresses are reported every scan (on_found); an address confirmed
 * before that misses `max_missed` scans in a row is reported lost once
 * (on_lost). What to do with either is the caller's (daemon.c joins the
 * node to the table or lets it leave).
 *
 * Ownership: the scanner owns its easy handles, buffers and timer; it is
 * freed in its close path (sol_discovery_stop's callback), never in one of
 * its own callbacks.
 */
#ifndef SOLLOL_DISCOVERY_H
#define SOLLOL_DISCOVERY_H

#include "sollol/curl_uv.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Most addresses the configured ranges may hold together (a /20). */
#define SOL_DISCOVERY_MAX_HOSTS 4096u

/* One entry: `count` consecutive addresses from `first` (host byte order). */
struct sol_discovery_range {
    uint32_t first;
    uint32_t count;
    int port;
};

struct sol_discovery_targets {
    struct sol_discovery_range *ranges; /* owned */
    size_t n;
    uint32_t hosts; /* sum of counts */
};

/*
 * Parses `text` (see above; NULL or "" = no targets). With out == NULL it
 * only validates. Returns 0 (out filled, free it with
 * sol_discovery_targets_free), or -1 with a bare reason in why, naming the
 * entry ("'10.0.0.0/8' holds 16777214 addresses; at most 4096 ...").
 */
int sol_discovery_parse(const char *text, int default_port, struct sol_discovery_targets *out,
                        char *why, size_t whylen);

void sol_discovery_targets_free(struct sol_discovery_targets *t);

struct sol_discovery_conf {
    unsigned interval_ms;
    unsigned timeout_ms;
    unsigned concurrency;
    unsigned max_missed;
};

struct sol_discovery_slot;
struct sol_discovery_seen;

struct sol_discovery {
    uv_loop_t *loop;
    struct sol_curl_uv *curl;
    struct sol_discovery_conf conf;
    struct sol_discovery_targets targets; /* the running scan's */
    struct sol_discovery_targets pending; /* set by reconfigure, taken at the next scan */
    int has_pending;
    uv_timer_t timer;
    struct sol_discovery_slot *slots; /* conf.concurrency of them */
    unsigned n_slots;
    unsigned running;                /* slots with a transfer in flight */
    size_t range_i;                  /* the scan's cursor: range ... */
    uint32_t offset;                 /* ... and address within it */
    int scanning;                    /* a scan is in progress */
    uint64_t scans;                  /* completed scans */
    struct sol_discovery_seen *seen; /* addresses confirmed at least once */
    size_t n_seen, cap_seen;
    /* Reports; url is "http://A.B.C.D:PORT", valid during the call only. */
    void (*on_found)(void *ud, const char *url, const char *version);
    void (*on_lost)(void *ud, const char *url);
    void *ud;
    void (*on_closed)(struct sol_discovery *disc);
    int closing;
};

/*
 * Starts scanning `targets` (taken over: the caller's struct is emptied)
 * now and then every interval. Returns 0, or -1 when memory runs out
 * (nothing left running).
 */
int sol_discovery_start(struct sol_discovery *disc, uv_loop_t *loop, struct sol_curl_uv *curl,
                        struct sol_discovery_targets *targets, const struct sol_discovery_conf *c,
                        void (*on_found)(void *ud, const char *url, const char *version),
                        void (*on_lost)(void *ud, const char *url), void *ud);

/*
 * New targets and settings (config reload). Targets are taken over and used
 * from the next scan on; the interval applies from the next scan; timeout
 * and concurrency changes (the slot count stays) apply to new transfers.
 * Addresses no longer targeted age out like vanished ones.
 */
void sol_discovery_reconfigure(struct sol_discovery *disc, struct sol_discovery_targets *targets,
                               const struct sol_discovery_conf *c);

/* Cancels running transfers and closes the timer; on_closed runs once
 * nothing of it is on the loop (then it may be freed). */
void sol_discovery_stop(struct sol_discovery *disc, void (*on_closed)(struct sol_discovery *disc));

#endif
