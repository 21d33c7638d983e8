/*
 * breaker.h - per-node circuit breaker over struct sol_breaker (node-t.h).
 *
 * Passive health from real traffic: a node that keeps failing requests gets
 * no traffic for a cooldown, then exactly one trial request; the trial's
 * verdict closes the breaker or re-opens it for twice as long.
 *
 *   CLOSED --(failure_threshold consecutive failures, or error rate over the
 *             window > error_rate with >= min_requests samples)--> OPEN
 *   OPEN   --(now >= open_until_ms)--> HALF_OPEN   (lazily: see below)
 *   HALF_OPEN --(success, or active probe OK)--> CLOSED
 *   HALF_OPEN --(failure)--> OPEN with the cooldown doubled (capped)
 *
 * Decisions made here (the lead copies them to docs/routing.md):
 *  - OPEN -> HALF_OPEN is lazy: nothing runs when the cooldown ends. An OPEN
 *    breaker whose open_until_ms has passed behaves exactly as HALF_OPEN
 *    (allows() says yes, on_dispatch() starts the trial and stores
 *    HALF_OPEN). So no timer is needed and readers need the clock.
 *  - Cooldown: the first trip opens for cooldown_min_ms; each re-open from
 *    HALF_OPEN doubles it, capped at cooldown_max_ms. After the breaker
 *    closes, the cooldown resets to the minimum only if it stays closed for
 *    at least window_ms: a node that trips again sooner (it passes one trial,
 *    then fails under load) is a relapse and gets the doubled cooldown, so a
 *    flapping node backs off instead of costing a failed request every
 *    cooldown_min_ms. To measure this, open_until_ms keeps a meaning in
 *    CLOSED: the time the breaker last closed (0 = never opened). It is
 *    "open until" only in OPEN.
 *  - Verdicts that arrive while OPEN (before the cooldown ends) are ignored:
 *    they come from requests dispatched before the trip and say nothing new.
 *  - In HALF_OPEN any success closes and any failure re-opens, trial or not
 *    (the API carries no request identity; a straggler that ends now is
 *    evidence about the node now as well).
 *  - An active probe that succeeds closes a HALF_OPEN (or cooled-down OPEN)
 *    breaker: the node answers again. It does not shorten a running
 *    cooldown: probes hit /api/version, which a node failing inference
 *    (out of memory, a broken runner) still answers.
 *  - Closing clears the consecutive count and the error-rate window, so old
 *    failures from before the trip cannot trip it again at once.
 *  - Error-rate window: 8 slots of window_ms / 8 (at least 1 ms); a verdict
 *    goes into slot (now / slot_ms) % 8; slots older than the window are
 *    cleared as time advances. The window therefore covers between 7/8 and
 *    all of window_ms. window_start_ms holds the start of the newest slot.
 *    Only CLOSED verdicts are counted.
 *  - Conf edge cases: failure_threshold 0 disables the consecutive rule;
 *    min_requests 0 counts as 1; error_rate >= 1 disables the rate rule;
 *    cooldown_min_ms 0 counts as 1; cooldown_max_ms below the minimum counts
 *    as the minimum.
 *
 * All functions take the time explicitly (monotonic milliseconds; tests use
 * a fake clock), never allocate, never log, and touch only the breaker.
 * Single-threaded like the rest of the node table.
 */
#ifndef SOLLOL_BREAKER_H
#define SOLLOL_BREAKER_H

#include "base/node-t.h"

#include <stdint.h>

/* Fills `c` with the defaults: 3 consecutive failures, error rate 0.5 over
 * at least 10 requests in a 30 s window, cooldown 1 s doubling to 60 s. */
void sol_breaker_conf_defaults(struct sol_breaker_conf *c);

/* Resets `b` to CLOSED with no history. */
void sol_breaker_init(struct sol_breaker *b);

/*
 * Read-only: may a request be sent to this node now? 1 when CLOSED; when
 * HALF_OPEN (or OPEN with open_until_ms <= now) only while no trial is in
 * flight; 0 when OPEN and cooling down.
 */
int sol_breaker_allows(const struct sol_breaker *b, uint64_t now);

/*
 * The effective state at `now`: an OPEN breaker whose cooldown has passed
 * reports SOL_BREAKER_HALF_OPEN. Read-only; for stats and explanations.
 */
enum sol_breaker_state sol_breaker_state_at(const struct sol_breaker *b, uint64_t now);

/*
 * A request was sent to the node. In (effective) HALF_OPEN it becomes the
 * trial: state HALF_OPEN, trial_in_flight = 1. Otherwise nothing changes
 * (a dispatch while OPEN, against allows(), is not a trial).
 */
void sol_breaker_on_dispatch(struct sol_breaker *b, uint64_t now);

/*
 * A request to the node succeeded. CLOSED: counted, consecutive failures
 * reset. HALF_OPEN (effective): closes. OPEN in cooldown: ignored.
 * Returns 1 when the state changed (log it once), else 0.
 */
int sol_breaker_on_success(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now);

/*
 * A request to the node failed because of the node (connect, timeout, 5xx,
 * broken stream; not a client cancel). CLOSED: counted, and trips to OPEN
 * when either rule fires. HALF_OPEN (effective): re-opens with the cooldown
 * doubled (capped). OPEN in cooldown: ignored. Increments opens_total on
 * every transition to OPEN. Returns 1 when the state changed, else 0.
 */
int sol_breaker_on_failure(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now);

/*
 * The client cancelled a request: not a verdict on the node. If a trial was
 * in flight it is released, so the next request may be the trial. Never
 * changes the state.
 */
void sol_breaker_on_cancel(struct sol_breaker *b, uint64_t now);

/*
 * An active probe succeeded. Closes a HALF_OPEN (or cooled-down OPEN)
 * breaker; does nothing in CLOSED or during a cooldown (see above).
 * Returns 1 when the state changed, else 0 (callers may ignore it).
 */
int sol_breaker_on_probe_ok(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now);

/* "closed", "open", "half-open"; "unknown" for anything else. Static. */
const char *sol_breaker_state_name(enum sol_breaker_state s);

#endif
