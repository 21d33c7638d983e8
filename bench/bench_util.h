/*
 * bench_util.h - what every microbenchmark here shares: a fixed-seed PRNG
 * (runs are comparable), thread CPU time (a shared, busy machine steals
 * wall time, not CPU time) and a comparator for medians.
 */
#ifndef SOLLOL_BENCH_UTIL_H
#define SOLLOL_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

static uint64_t rng_state = 0x5eed;

/* xorshift64*: fast, deterministic; quality beyond that does not matter. */
static inline uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
