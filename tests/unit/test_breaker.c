/*
 * Unit test of the circuit breaker, on a fake clock: every transition, the
 * cooldown doubling, cap and reset, the error-rate window sliding, the
 * single half-open trial, cancels and probes.
 */
#include "base/breaker.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

#define ST(b, now) sol_breaker_state_name(sol_breaker_state_at((b), (now)))

static struct sol_breaker_conf conf(void)
{
    struct sol_breaker_conf c;
    sol_breaker_conf_defaults(&c);
    return c;
}

static void test_defaults_and_names(void)
{
    struct sol_breaker_conf c = conf();
    CHECK(c.failure_threshold == 3 && c.error_rate == 0.5 && c.min_requests == 10 &&
              c.window_ms == 30000 && c.cooldown_min_ms == 1000 && c.cooldown_max_ms == 60000,
          "defaults");
    CHECK(strcmp(sol_breaker_state_name(SOL_BREAKER_CLOSED), "closed") == 0, "closed");
    CHECK(strcmp(sol_breaker_state_name(SOL_BREAKER_OPEN), "open") == 0, "open");
    CHECK(strcmp(sol_breaker_state_name(SOL_BREAKER_HALF_OPEN), "half-open") == 0, "half");
    CHECK(strcmp(sol_breaker_state_name((enum sol_breaker_state)42), "unknown") == 0, "other");

    struct sol_breaker b;
    memset(&b, 0xff, sizeof b);
    sol_breaker_init(&b);
    CHECK(b.state == SOL_BREAKER_CLOSED && b.consecutive_failures == 0 && b.opens_total == 0 &&
              b.trial_in_flight == 0 && b.window_fail[7] == 0,
          "init");
    CHECK(sol_breaker_allows(&b, 0), "closed allows");
}

/* closed -> open -> (cooldown) half-open -> trial ok -> closed */
static void test_consecutive_and_trial_success(void)
{
    struct sol_breaker_conf c = conf();
    struct sol_breaker b;
    sol_breaker_init(&b);
    uint64_t t = 100000;

    CHECK(sol_breaker_on_failure(&b, &c, t) == 0, "1st failure");
    CHECK(sol_breaker_on_failure(&b, &c, t + 1) == 0, "2nd failure");
    CHECK(b.consecutive_failures == 2, "%u", b.consecutive_failures);
    /* a success in between resets the run */
    CHECK(sol_breaker_on_success(&b, &c, t + 2) == 0, "success");
    CHECK(b.consecutive_failures == 0, "reset");
    CHECK(sol_breaker_on_failure(&b, &c, t + 3) == 0, "1");
    CHECK(sol_breaker_on_failure(&b, &c, t + 4) == 0, "2");
    CHECK(sol_breaker_on_failure(&b, &c, t + 5) == 1, "3rd consecutive failure trips");
    CHECK(b.state == SOL_BREAKER_OPEN && b.opens_total == 1, "open");
    CHECK(b.cooldown_ms == 1000 && b.open_until_ms == t + 5 + 1000, "cooldown %llu until %llu",
          (unsigned long long)b.cooldown_ms, (unsigned long long)b.open_until_ms);

    /* open: nothing goes; verdicts of stragglers are ignored */
    t += 5;
    CHECK(!sol_breaker_allows(&b, t), "open refuses");
    CHECK(!sol_breaker_allows(&b, t + 999), "still cooling");
    CHECK(sol_breaker_on_success(&b, &c, t + 10) == 0 && b.state == SOL_BREAKER_OPEN,
          "straggler success ignored");
    CHECK(sol_breaker_on_failure(&b, &c, t + 20) == 0 && b.open_until_ms == t + 1000,
          "straggler failure ignored, cooldown not extended");
    sol_breaker_on_dispatch(&b, t + 30);
    CHECK(b.state == SOL_BREAKER_OPEN && !b.trial_in_flight, "dispatch while open is no trial");
    CHECK(sol_breaker_on_probe_ok(&b, &c, t + 40) == 0 && b.state == SOL_BREAKER_OPEN,
          "probe does not cut a cooldown short");

    /* cooldown over: effectively half-open, one trial */
    t += 1000;
    CHECK(strcmp(ST(&b, t), "half-open") == 0, "%s", ST(&b, t));
    CHECK(b.state == SOL_BREAKER_OPEN, "lazy: stored state untouched by reads");
    CHECK(sol_breaker_allows(&b, t), "trial allowed");
    sol_breaker_on_dispatch(&b, t);
    CHECK(b.state == SOL_BREAKER_HALF_OPEN && b.trial_in_flight == 1, "trial marked");
    CHECK(!sol_breaker_allows(&b, t), "only one trial");
    CHECK(!sol_breaker_allows(&b, t + 100000), "only one trial, however long it runs");
    CHECK(sol_breaker_on_success(&b, &c, t + 500) == 1, "trial success closes");
    CHECK(b.state == SOL_BREAKER_CLOSED && b.trial_in_flight == 0 && b.consecutive_failures == 0,
          "closed");
    CHECK(sol_breaker_allows(&b, t + 500), "closed allows");
    CHECK(sol_breaker_on_success(&b, &c, t + 600) == 0, "no transition");
}

/* half-open trial failure re-opens with a doubled cooldown, capped */
static void test_doubling_and_cap(void)
{
    struct sol_breaker_conf c = conf();
    c.cooldown_min_ms = 1000;
    c.cooldown_max_ms = 5000;
    struct sol_breaker b;
    sol_breaker_init(&b);
    uint64_t t = 0;
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, t);
    CHECK(b.state == SOL_BREAKER_OPEN && b.cooldown_ms == 1000, "first open 1000");

    uint64_t want[] = {2000, 4000, 5000, 5000};
    for (int i = 0; i < 4; i++) {
        t = b.open_until_ms;
        CHECK(sol_breaker_allows(&b, t), "trial allowed at open_until (round %d)", i);
        CHECK(!sol_breaker_allows(&b, t - 1), "not a ms before (round %d)", i);
        sol_breaker_on_dispatch(&b, t);
        CHECK(sol_breaker_on_failure(&b, &c, t + 7) == 1, "trial failure re-opens");
        CHECK(b.state == SOL_BREAKER_OPEN && b.cooldown_ms == want[i] &&
                  b.open_until_ms == t + 7 + want[i] && b.trial_in_flight == 0,
              "round %d: cooldown %llu want %llu", i, (unsigned long long)b.cooldown_ms,
              (unsigned long long)want[i]);
    }
    CHECK(b.opens_total == 5, "opens_total %u", b.opens_total);

    /* Close, then stay closed for a whole window: next trip starts at min. */
    t = b.open_until_ms;
    sol_breaker_on_dispatch(&b, t);
    CHECK(sol_breaker_on_success(&b, &c, t) == 1 && b.state == SOL_BREAKER_CLOSED, "closed");
    t += c.window_ms;
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, t);
    CHECK(b.state == SOL_BREAKER_OPEN && b.cooldown_ms == 1000,
          "reset to min after a calm window: "
          "%llu",
          (unsigned long long)b.cooldown_ms);

    /* Relapse: trips again less than a window after closing: doubled. */
    t = b.open_until_ms;
    sol_breaker_on_dispatch(&b, t);
    sol_breaker_on_success(&b, &c, t);
    t += c.window_ms - 1;
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, t);
    CHECK(b.state == SOL_BREAKER_OPEN && b.cooldown_ms == 2000, "relapse doubles: %llu",
          (unsigned long long)b.cooldown_ms);

    /* Odd conf: cap below min counts as min; min 0 counts as 1 ms. */
    struct sol_breaker_conf odd = conf();
    odd.cooldown_min_ms = 0;
    odd.cooldown_max_ms = 0;
    sol_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &odd, 50);
    CHECK(b.state == SOL_BREAKER_OPEN && b.cooldown_ms == 1 && b.open_until_ms == 51, "min 0");
    sol_breaker_on_dispatch(&b, 51);
    sol_breaker_on_failure(&b, &odd, 51);
    CHECK(b.cooldown_ms == 1, "capped at min: %llu", (unsigned long long)b.cooldown_ms);
}

/* Cooldown never overflows when doubling near UINT64_MAX. */
static void test_doubling_no_overflow(void)
{
    struct sol_breaker_conf c = conf();
    c.cooldown_min_ms = 1;
    c.cooldown_max_ms = UINT64_MAX / 2 + 10;
    struct sol_breaker b;
    sol_breaker_init(&b);
    b.state = SOL_BREAKER_HALF_OPEN;
    b.cooldown_ms = UINT64_MAX / 2 + 5;
    sol_breaker_on_failure(&b, &c, 0);
    CHECK(b.cooldown_ms == c.cooldown_max_ms, "%llu", (unsigned long long)b.cooldown_ms);
}

static void test_cancel_releases_trial(void)
{
    struct sol_breaker_conf c = conf();
    struct sol_breaker b;
    sol_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, 0);
    uint64_t t = b.open_until_ms;
    sol_breaker_on_dispatch(&b, t);
    CHECK(!sol_breaker_allows(&b, t), "trial in flight");
    sol_breaker_on_cancel(&b, t + 10);
    CHECK(b.state == SOL_BREAKER_HALF_OPEN && !b.trial_in_flight, "cancel: still half-open");
    CHECK(sol_breaker_allows(&b, t + 10), "next request may be the trial");
    CHECK(b.cooldown_ms == 1000 && b.opens_total == 1, "cancel is no verdict");
    sol_breaker_on_dispatch(&b, t + 20);
    CHECK(b.trial_in_flight == 1, "new trial");
    CHECK(sol_breaker_on_failure(&b, &c, t + 30) == 1 && b.cooldown_ms == 2000, "fails: x2");

    /* cancel outside half-open changes nothing */
    sol_breaker_init(&b);
    sol_breaker_on_failure(&b, &c, 5);
    sol_breaker_on_cancel(&b, 6);
    CHECK(b.state == SOL_BREAKER_CLOSED && b.consecutive_failures == 1, "closed cancel");
}

static void test_probe_closes_half_open(void)
{
    struct sol_breaker_conf c = conf();
    struct sol_breaker b;
    sol_breaker_init(&b);
    CHECK(sol_breaker_on_probe_ok(&b, &c, 0) == 0, "closed: probe is no transition");
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, 0);
    /* cooled-down OPEN (never dispatched): a probe closes it */
    CHECK(sol_breaker_on_probe_ok(&b, &c, 999) == 0 && b.state == SOL_BREAKER_OPEN, "cooling");
    CHECK(sol_breaker_on_probe_ok(&b, &c, 1000) == 1 && b.state == SOL_BREAKER_CLOSED,
          "probe after cooldown closes");

    /* with a trial in flight: the probe closes; the trial's verdict then
     * counts as an ordinary closed verdict */
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, 2000);
    uint64_t t = b.open_until_ms;
    sol_breaker_on_dispatch(&b, t);
    CHECK(sol_breaker_on_probe_ok(&b, &c, t + 1) == 1 && b.state == SOL_BREAKER_CLOSED &&
              !b.trial_in_flight,
          "probe closes half-open");
    CHECK(sol_breaker_on_failure(&b, &c, t + 2) == 0 && b.consecutive_failures == 1,
          "late trial failure counted once");
}

/* A straggler failure in half-open (no trial in flight) re-opens too. */
static void test_half_open_without_trial(void)
{
    struct sol_breaker_conf c = conf();
    struct sol_breaker b;
    sol_breaker_init(&b);
    for (int i = 0; i < 3; i++)
        sol_breaker_on_failure(&b, &c, 0);
    CHECK(sol_breaker_on_failure(&b, &c, 1000) == 1 && b.state == SOL_BREAKER_OPEN &&
              b.cooldown_ms == 2000 && b.open_until_ms == 3000,
          "failure after cooldown re-opens");
    CHECK(sol_breaker_on_success(&b, &c, 3000) == 1 && b.state == SOL_BREAKER_CLOSED,
          "success after cooldown closes");
}

/* Error rate: window 8 s = 8 slots of 1 s; threshold disabled to isolate. */
static void test_error_rate_window(void)
{
    struct sol_breaker_conf c = conf();
    c.failure_threshold = 0; /* consecutive rule off */
    c.window_ms = 8000;
    c.min_requests = 10;
    c.error_rate = 0.5;
    struct sol_breaker b;
    sol_breaker_init(&b);

    /* 5 ok + 5 fail interleaved at t = 1000..1009: 5/10 is not > 0.5 */
    uint64_t t = 1000;
    for (int i = 0; i < 5; i++) {
        sol_breaker_on_success(&b, &c, t++);
        CHECK(sol_breaker_on_failure(&b, &c, t++) == 0, "i=%d", i);
    }
    CHECK(b.state == SOL_BREAKER_CLOSED, "50%% is not over 50%%");
    /* one more failure: 6/11 > 0.5 with 11 >= 10 */
    CHECK(sol_breaker_on_failure(&b, &c, t) == 1 && b.state == SOL_BREAKER_OPEN,
          "6/11 trips: state %s", ST(&b, t));

    /* below min_requests nothing trips, even at 100% */
    sol_breaker_init(&b);
    for (int i = 0; i < 9; i++)
        CHECK(sol_breaker_on_failure(&b, &c, 1000 + (uint64_t)i) == 0, "9 failures < min");
    CHECK(b.state == SOL_BREAKER_CLOSED, "closed below min_requests");

    /* Old failures slide out: 9 failures at t=1000 (slot 1). Just under 8 s
     * later they still count; 8 s later their slot is reused and cleared. */
    sol_breaker_init(&b);
    for (int i = 0; i < 9; i++)
        sol_breaker_on_failure(&b, &c, 1000);
    /* t = 8999: slot 8 (index 0); slots 2..8 skipped over and cleared, slot 1
     * (the failures) still in the window. With one success and one more
     * failure: 10 failed of 11 >= min_requests. */
    sol_breaker_on_success(&b, &c, 8999);
    CHECK(b.state == SOL_BREAKER_CLOSED, "success never trips");
    CHECK(sol_breaker_on_failure(&b, &c, 8999) == 1, "10 fail / 11 in window trips");

    sol_breaker_init(&b);
    for (int i = 0; i < 9; i++)
        sol_breaker_on_failure(&b, &c, 1000);
    /* t = 9000: slot 9 (index 1) reuses the failures' slot: cleared */
    CHECK(sol_breaker_on_failure(&b, &c, 9000) == 0, "old failures slid out");
    CHECK(b.window_fail[1] == 1, "slot 1 holds only the new failure: %u", b.window_fail[1]);

    /* a long silence clears everything */
    sol_breaker_init(&b);
    for (int i = 0; i < 9; i++)
        sol_breaker_on_failure(&b, &c, 1000);
    CHECK(sol_breaker_on_failure(&b, &c, 1000000) == 0, "after a long gap: 1/1 < min");
    unsigned sum = 0;
    for (int i = 0; i < 8; i++)
        sum += b.window_fail[i];
    CHECK(sum == 1, "sum %u", sum);

    /* error_rate >= 1 disables the rule */
    c.error_rate = 1.0;
    sol_breaker_init(&b);
    for (int i = 0; i < 50; i++)
        sol_breaker_on_failure(&b, &c, 1000);
    CHECK(b.state == SOL_BREAKER_CLOSED, "rate rule off");

    /* closing clears the window: old failures do not re-trip at once */
    c = conf();
    c.failure_threshold = 0;
    sol_breaker_init(&b);
    for (int i = 0; i < 10; i++)
        sol_breaker_on_failure(&b, &c, 1000);
    CHECK(b.state == SOL_BREAKER_OPEN, "tripped by rate");
    t = b.open_until_ms;
    sol_breaker_on_dispatch(&b, t);
    sol_breaker_on_success(&b, &c, t);
    CHECK(sol_breaker_on_failure(&b, &c, t + 1) == 0 && b.state == SOL_BREAKER_CLOSED,
          "window cleared on close");
}

/* Both rules together: the consecutive rule fires first at default conf. */
static void test_window_with_threshold(void)
{
    struct sol_breaker_conf c = conf();
    struct sol_breaker b;
    sol_breaker_init(&b);
    /* ok, fail, fail, ok, fail, fail, ... never 3 in a row. Request 9 (the
     * 10th) is a success (6/10 check_failed, but successes never trip); request
     * 10 is a failure: 7/11 > 0.5 with 11 >= 10 trips. */
    int tripped_at = -1;
    for (int i = 0; i < 30 && tripped_at < 0; i++) {
        int rc = (i % 3 == 0) ? sol_breaker_on_success(&b, &c, 5000 + (uint64_t)i)
                              : sol_breaker_on_failure(&b, &c, 5000 + (uint64_t)i);
        if (rc)
            tripped_at = i;
    }
    CHECK(tripped_at == 10, "tripped at request %d", tripped_at);
    CHECK(b.consecutive_failures < 3, "not by the consecutive rule: %u", b.consecutive_failures);
}

int main(void)
{
    test_defaults_and_names();
    test_consecutive_and_trial_success();
    test_doubling_and_cap();
    test_doubling_no_overflow();
    test_cancel_releases_trial();
    test_probe_closes_half_open();
    test_half_open_without_trial();
    test_error_rate_window();
    test_window_with_threshold();
    return check_summary();
}
