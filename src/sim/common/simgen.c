/*
 * simgen.c - deterministic generation shared by the simulators (simgen.h).
 */
#include "simgen.h"

#include <string.h>
#include <uv.h>

uint64_t fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t fmix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t mix64(uint64_t x)
{
    return fmix64(x + SIMGEN_GAMMA);
}

size_t simgen_token(uint64_t *state, const char *const vocab[64], int first,
                    char out[SIMGEN_TOKEN_MAX])
{
    uint64_t x = mix64(*state);
    *state += SIMGEN_GAMMA;
    const char *w = vocab[x & 63];
    size_t wl = strnlen(w, SIMGEN_TOKEN_MAX - 2);
    size_t n;
    if (first) {
        memcpy(out, w, wl);
        n = wl;
        if (out[0] >= 'a' && out[0] <= 'z')
            out[0] = (char)(out[0] - 'a' + 'A');
    } else if (((x >> 6) & 15) == 0) {
        out[0] = '.';
        n = 1;
    } else {
        out[0] = ' ';
        memcpy(out + 1, w, wl);
        n = wl + 1;
    }
    out[n] = 0;
    return n;
}

uint64_t now_ns(void)
{
    return uv_hrtime();
}
