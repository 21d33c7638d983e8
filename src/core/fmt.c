#include "sollol/fmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t sol_fmt_u64(char *out, uint64_t v)
{
    char tmp[SOL_FMT_U64_MAX];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t sol_fmt_hex(char *out, uint64_t v, unsigned width)
{
    static const char digits[] = "0123456789abcdef";
    if (width > 16)
        width = 16;
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    while (n < width)
        tmp[n++] = '0';
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t sol_fmt_fixed1(char *out, double v)
{
    /* printf rounds the exact binary value. v * 10 is rounded itself, so a
     * value within a hair of a midpoint (x.x5) may land on either side of
     * it: those, and values too large for the hair to be measured (above
     * 1e8 ms the product's ulp nears 1e-6), are left to snprintf. */
    if (!(v >= 0 && v < 1e8) || signbit(v))
        return (size_t)snprintf(out, 32, "%.1f", v);
    double scaled = v * 10.0;
    uint64_t tenths = (uint64_t)scaled;
    double frac = scaled - (double)tenths;
    if (fabs(frac - 0.5) < 1e-6)
        return (size_t)snprintf(out, 32, "%.1f", v);
    if (frac > 0.5)
        tenths++;
    size_t n = sol_fmt_u64(out, tenths / 10);
    out[n++] = '.';
    out[n++] = (char)('0' + tenths % 10);
    out[n] = '\0';
    return n;
}

size_t sol_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

size_t sol_cat(char *dst, size_t size, size_t pos, const char *src, size_t n)
{
    size_t room = size - 1 - pos;
    if (n > room)
        n = room;
    memcpy(dst + pos, src, n);
    pos += n;
    dst[pos] = '\0';
    return pos;
}
