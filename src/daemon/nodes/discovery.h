/*
 * discovery.h - finds Ollama nodes beyond the static list by scanning IPv4
 * ranges on the loop.
 *
 * Targets are parsed by discovery_targets.h (config.c checks them there
 * too, without this scanner).
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
#include "base/discovery_targets.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

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
