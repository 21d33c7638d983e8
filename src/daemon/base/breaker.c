/*
 * breaker.c - per-node circuit breaker (see breaker.h for the rules).
 */
#include "base/breaker.h"

#include <string.h>

#define SLOTS 8u

void sol_breaker_conf_defaults(struct sol_breaker_conf *c)
{
    c->failure_threshold = 3;
    c->error_rate = 0.5;
    c->min_requests = 10;
    c->window_ms = 30000;
    c->cooldown_min_ms = 1000;
    c->cooldown_max_ms = 60000;
}

void sol_breaker_init(struct sol_breaker *b)
{
    memset(b, 0, sizeof *b);
    b->state = SOL_BREAKER_CLOSED;
}

enum sol_breaker_state sol_breaker_state_at(const struct sol_breaker *b, uint64_t now)
{
    if (b->state == SOL_BREAKER_OPEN && now >= b->open_until_ms)
        return SOL_BREAKER_HALF_OPEN;
    return b->state;
}

int sol_breaker_allows(const struct sol_breaker *b, uint64_t now)
{
    switch (sol_breaker_state_at(b, now)) {
    case SOL_BREAKER_CLOSED:
        return 1;
    case SOL_BREAKER_HALF_OPEN:
        return !b->trial_in_flight;
    default:
        return 0;
    }
}

static uint64_t slot_ms(const struct sol_breaker_conf *c)
{
    uint64_t s = c->window_ms / SLOTS;
    return s ? s : 1;
}

static void window_clear(struct sol_breaker *b)
{
    memset(b->window_ok, 0, sizeof b->window_ok);
    memset(b->window_fail, 0, sizeof b->window_fail);
}

/* Moves the window to `now`: clears the slots that the time since the last
 * verdict has skipped over, so they count from zero when reused. */
static unsigned window_advance(struct sol_breaker *b, const struct sol_breaker_conf *c,
                               uint64_t now)
{
    uint64_t sm = slot_ms(c);
    uint64_t cur = now / sm, last = b->window_start_ms / sm;
    if (cur > last) {
        if (cur - last >= SLOTS) {
            window_clear(b);
        } else {
            for (uint64_t k = last + 1; k <= cur; k++) {
                b->window_ok[k % SLOTS] = 0;
                b->window_fail[k % SLOTS] = 0;
            }
        }
        b->window_start_ms = cur * sm;
    }
    /* A clock that went backwards (it should not) keeps the newest slot. */
    return (unsigned)((cur > last ? cur : last) % SLOTS);
}

static uint64_t cooldown_min(const struct sol_breaker_conf *c)
{
    return c->cooldown_min_ms ? c->cooldown_min_ms : 1;
}

static uint64_t cooldown_double(uint64_t cd, const struct sol_breaker_conf *c)
{
    uint64_t min = cooldown_min(c);
    uint64_t max = c->cooldown_max_ms > min ? c->cooldown_max_ms : min;
    if (cd < min)
        return min;
    return cd > max / 2 ? max : cd * 2;
}

static void open_for(struct sol_breaker *b, uint64_t cooldown, uint64_t now)
{
    b->state = SOL_BREAKER_OPEN;
    b->cooldown_ms = cooldown;
    b->open_until_ms = now + cooldown;
    b->trial_in_flight = 0;
    b->opens_total++;
}

static void close_at(struct sol_breaker *b, uint64_t now)
{
    b->state = SOL_BREAKER_CLOSED;
    b->trial_in_flight = 0;
    b->consecutive_failures = 0;
    b->open_until_ms = now; /* in CLOSED: when it last closed */
    window_clear(b);
    b->window_start_ms = now;
}

void sol_breaker_on_dispatch(struct sol_breaker *b, uint64_t now)
{
    if (sol_breaker_state_at(b, now) == SOL_BREAKER_HALF_OPEN) {
        b->state = SOL_BREAKER_HALF_OPEN;
        b->trial_in_flight = 1;
    }
}

int sol_breaker_on_success(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now)
{
    switch (sol_breaker_state_at(b, now)) {
    case SOL_BREAKER_CLOSED:
        b->window_ok[window_advance(b, c, now)]++;
        b->consecutive_failures = 0;
        return 0;
    case SOL_BREAKER_HALF_OPEN:
        close_at(b, now);
        return 1;
    default:
        return 0;
    }
}

int sol_breaker_on_failure(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now)
{
    switch (sol_breaker_state_at(b, now)) {
    case SOL_BREAKER_CLOSED: {
        b->window_fail[window_advance(b, c, now)]++;
        b->consecutive_failures++;
        int trip = c->failure_threshold && b->consecutive_failures >= c->failure_threshold;
        if (!trip) {
            unsigned ok = 0, fail = 0;
            for (unsigned i = 0; i < SLOTS; i++) {
                ok += b->window_ok[i];
                fail += b->window_fail[i];
            }
            unsigned min = c->min_requests ? c->min_requests : 1;
            trip = ok + fail >= min && (double)fail > c->error_rate * (double)(ok + fail);
        }
        if (!trip)
            return 0;
        /* A trip soon after the last close is a relapse: keep backing off. */
        int relapse = b->opens_total > 0 && now - b->open_until_ms < c->window_ms;
        open_for(b, relapse ? cooldown_double(b->cooldown_ms, c) : cooldown_min(c), now);
        return 1;
    }
    case SOL_BREAKER_HALF_OPEN:
        open_for(b, cooldown_double(b->cooldown_ms, c), now);
        return 1;
    default:
        return 0;
    }
}

void sol_breaker_on_cancel(struct sol_breaker *b, uint64_t now)
{
    if (b->state == SOL_BREAKER_HALF_OPEN)
        b->trial_in_flight = 0;
}

int sol_breaker_on_probe_ok(struct sol_breaker *b, const struct sol_breaker_conf *c, uint64_t now)
{
    if (sol_breaker_state_at(b, now) != SOL_BREAKER_HALF_OPEN)
        return 0;
    close_at(b, now);
    return 1;
}

const char *sol_breaker_state_name(enum sol_breaker_state s)
{
    switch (s) {
    case SOL_BREAKER_CLOSED:
        return "closed";
    case SOL_BREAKER_OPEN:
        return "open";
    case SOL_BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "unknown";
}
