/*
 * util.c - ollama-sim's Go-flavoured helpers: numbers as Go's encoding/json
 * formats them, RFC 3339 timestamps and Go's duration syntax.
 * (Buffers, JSON strings and hashes shared with the stand-ins are in
 * common/sbuf.c and common/simgen.c; SHA-256 is src/core's.)
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sb_json_float(struct sbuf *b, double v, int f32)
{
    if (v == 0 || !isfinite(v)) {
        sb_putc(b, '0');
        return;
    }
    /* Shortest round-trip digits: the correctly rounded p-digit value is the
     * closest candidate of that length, so the first p that round-trips is
     * the shortest representation. */
    char tmp[40];
    int maxp = f32 ? 9 : 17;
    for (int p = 0; p < maxp; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p, v);
        if (f32 ? (strtof(tmp, NULL) == (float)v) : (strtod(tmp, NULL) == v))
            break;
    }
    /* tmp is [-]d[.ddd]e[+-]xx */
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 23)
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp = atoi(p + 1);
    double a = fabs(v);
    if (neg)
        sb_putc(b, '-');
    if (a < 1e-6 || a >= 1e21) {
        sb_putc(b, digits[0]);
        if (nd > 1) {
            sb_putc(b, '.');
            sb_put(b, digits + 1, (size_t)nd - 1);
        }
        sb_printf(b, "e%c%s%d", exp < 0 ? '-' : '+', (exp > -10 && exp < 10 && exp >= 0) ? "0" : "",
                  exp < 0 ? -exp : exp);
        return;
    }
    if (exp >= 0) {
        for (int i = 0; i <= exp; i++)
            sb_putc(b, i < nd ? digits[i] : '0');
        if (nd > exp + 1) {
            sb_putc(b, '.');
            sb_put(b, digits + exp + 1, (size_t)(nd - exp - 1));
        }
    } else {
        sb_puts(b, "0.");
        for (int i = 0; i < -exp - 1; i++)
            sb_putc(b, '0');
        sb_put(b, digits, (size_t)nd);
    }
}

void sb_rfc3339(struct sbuf *b, int64_t sec, long nsec)
{
    /* Every streamed chunk carries a timestamp: keep the formatted seconds
     * of the last call (single-threaded). */
    static int64_t cached_sec = INT64_MIN;
    static char cached[32];
    static size_t cached_len;
    if (sec != cached_sec) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        int n = snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_len = n > 0 ? (size_t)n : 0;
        cached_sec = sec;
    }
    sb_put(b, cached, cached_len);
    if (nsec > 0) {
        char frac[10];
        long v = nsec % 1000000000;
        for (int i = 8; i >= 0; i--) {
            frac[i] = (char)('0' + v % 10);
            v /= 10;
        }
        int len = 9;
        while (len > 0 && frac[len - 1] == '0')
            len--;
        sb_putc(b, '.');
        sb_put(b, frac, (size_t)len);
    }
    sb_putc(b, 'Z');
}

void wall_now(int64_t *sec, long *nsec)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *sec = ts.tv_sec;
    *nsec = ts.tv_nsec;
}

void sb_now_rfc3339(struct sbuf *b)
{
    int64_t s;
    long ns;
    wall_now(&s, &ns);
    sb_rfc3339(b, s, ns);
}

double sim_ms(uint64_t ns)
{
    if (ns < g_sim.start_ns)
        return 0;
    return (double)(ns - g_sim.start_ns) / 1e6;
}

/* ---- Go's time.ParseDuration ---- */

int go_parse_duration(const char *orig, int64_t *ns, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        double mult;
    } units[] = {{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
                 {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
    const char *s = orig;
    int neg = 0;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (!*s)
        goto invalid;
    double total = 0;
    while (*s) {
        if (!((*s >= '0' && *s <= '9') || *s == '.'))
            goto invalid;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno)
            goto invalid;
        s = end;
        size_t ul = 0;
        while (s[ul] && !((s[ul] >= '0' && s[ul] <= '9') || s[ul] == '.'))
            ul++;
        if (ul == 0) {
            snprintf(err, errlen, "time: missing unit in duration \"%s\"", orig);
            return -1;
        }
        double mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strlen(units[i].name) == ul && memcmp(units[i].name, s, ul) == 0)
                mult = units[i].mult;
        if (mult == 0) {
            snprintf(err, errlen, "time: unknown unit \"%.*s\" in duration \"%s\"", (int)ul, s,
                     orig);
            return -1;
        }
        total += v * mult;
        s += ul;
    }
    if (total > 9.2e18)
        goto invalid;
    *ns = (int64_t)(neg ? -total : total);
    return 0;
invalid:
    snprintf(err, errlen, "time: invalid duration \"%s\"", orig);
    return -1;
}

int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -1;
    double mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1e3, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1e6, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1e9, end++;
    if (*end)
        return -1;
    *out = (uint64_t)(v * mult);
    return 0;
}
