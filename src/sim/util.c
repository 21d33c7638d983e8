/*
 * util.c - ollama-sim's Go-flavoured helpers: numbers as Go's encoding/json
 * formats them, RFC 3339 timestamps, SHA-256 and Go's duration syntax.
 * (Buffers, JSON strings and hashes shared with the stand-ins are in
 * common/sbuf.c and common/simgen.c.)
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

/* ---- SHA-256 (FIPS 180-4), for POST /api/blobs verification ---- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5],
             g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->nbuf = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        n -= take;
        if (s->nbuf == 64) {
            sha256_block(s, s->buf);
            s->nbuf = 0;
        }
    }
    while (n >= 64) {
        sha256_block(s, p);
        p += 64;
        n -= 64;
    }
    if (n) {
        memcpy(s->buf, p, n);
        s->nbuf = n;
    }
}

void sha256_hex(struct sha256 *s, char out[65])
{
    uint64_t bits = s->len * 8;
    /* 0x80, then zeros up to 56 bytes into a block (FIPS 180-4 5.1.1). */
    uint8_t padding[64] = {0x80};
    sha256_update(s, padding, s->nbuf < 56 ? 56 - s->nbuf : 120 - s->nbuf);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, lenb, 8);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", s->h[i]);
    out[64] = 0;
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
