/* test_fmt: every formatter against the snprintf text it replaces. */
#include "sollol/fmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_u64(uint64_t v)
{
    char got[SOL_FMT_U64_MAX], want[32];
    size_t n = sol_fmt_u64(got, v);
    snprintf(want, sizeof want, "%" PRIu64, v);
    CHECK(strcmp(got, want) == 0 && n == strlen(want), "%" PRIu64 ": got '%s'", v, got);
}

static void check_hex(uint64_t v, unsigned width)
{
    char got[17], want[32];
    size_t n = sol_fmt_hex(got, v, width);
    snprintf(want, sizeof want, "%0*" PRIx64, (int)width, v);
    CHECK(strcmp(got, want) == 0 && n == strlen(want), "%" PRIx64 "/%u: got '%s'", v, width, got);
}

static void check_fixed1(double v)
{
    char got[32], want[64];
    size_t n = sol_fmt_fixed1(got, v);
    snprintf(want, sizeof want, "%.1f", v);
    CHECK(strcmp(got, want) == 0 && n == strlen(want), "%.17g: got '%s' want '%s'", v, got, want);
}

int main(void)
{
    const uint64_t edges[] = {0,
                              1,
                              9,
                              10,
                              99,
                              100,
                              4294967295ULL,
                              4294967296ULL,
                              UINT64_MAX,
                              UINT64_MAX - 1,
                              10000000000000000000ULL};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        check_u64(edges[i]);
        for (unsigned w = 0; w <= 16; w += 4)
            check_hex(edges[i], w);
    }
    for (int i = 0; i < 200000; i++) {
        uint64_t v = next() >> (next() % 64);
        check_u64(v);
        check_hex(v, (unsigned)(next() % 17));
    }

    /* Midpoints and their neighbours, where rounding differs first. */
    for (int k = 0; k < 20000; k++) {
        double mid = k / 10.0 + 0.05;
        check_fixed1(mid);
        check_fixed1(nextafter(mid, 0));
        check_fixed1(nextafter(mid, 1e9));
        check_fixed1(k / 10.0);
        check_fixed1(k / 1000.0);
    }
    const double specials[] = {0.0,  -0.0,        -1.25, 0.05, 0.15, 0.25,  0.35,
                               0.45, 99999999.95, 1e8,   1e15, 1e20, -1e20, 0.04999999999999999};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        check_fixed1(specials[i]);
    for (int i = 0; i < 300000; i++) {
        /* Durations as the daemon computes them: ns / 1e6. */
        double ms = (double)(next() % 100000000000ULL) / 1e6;
        check_fixed1(ms);
        check_fixed1((double)(next() % 1000000) / 8.0);
    }

    char buf[8];
    CHECK(sol_copy(buf, sizeof buf, "abc") == 3 && strcmp(buf, "abc") == 0, "short copy");
    CHECK(sol_copy(buf, sizeof buf, "abcdefghij") == 7 && strcmp(buf, "abcdefg") == 0,
          "truncated copy '%s'", buf);
    CHECK(sol_copy(buf, 1, "abc") == 0 && buf[0] == '\0', "size 1 copy");
    size_t pos = sol_cat(buf, sizeof buf, 0, "ab", 2);
    pos = sol_cat(buf, sizeof buf, pos, ": ", 2);
    pos = sol_cat(buf, sizeof buf, pos, "cdefgh", 6);
    CHECK(pos == 7 && strcmp(buf, "ab: cde") == 0, "cat truncates at the end: '%s'", buf);
    return check_summary();
}
