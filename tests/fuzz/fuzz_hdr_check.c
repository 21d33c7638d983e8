/*
 * libFuzzer target: request targets and header fields (hdr_check.c).
 *
 * Input: the first byte picks the mode.
 *  - even: the rest is a raw request target. Checked beyond memory safety:
 *    an accepted target decodes to a path that starts with '/', has no '%',
 *    no byte outside RFC 3986 pchar and '/', no empty, "." or ".." segment,
 *    and is accepted again unchanged (its own normal form); a refusal
 *    always says why. Every decoded byte also appears decoded the way
 *    libmicrohttpd's unescape would (a %XX -> one byte), so what access
 *    control judges is what the node gets.
 *  - odd: the rest is a header block ("name:value" lines split on '\n'),
 *    laid out as libmicrohttpd 0.9.75 does in place. Checked: the status is
 *    0, 400 or 501, a refusal has a message without control bytes; an
 *    accepted block has only token names and values without CR, LF or NUL;
 *    a block with a space before a colon is never accepted.
 */
#include "fuzz_util.h"

#include "base/hdr_check.h"

#include <string.h>

static int pchar_or_slash(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* What libmicrohttpd's MHD_http_unescape makes of the path (0.9.75: every
 * well-formed %XX becomes its byte, anything else is kept). */
static size_t mhd_unescape(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n && in[i] == '%' ? hex(in[i + 1]) : -1;
        int lo = hi >= 0 ? hex(in[i + 2]) : -1;
        if (lo >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

static void target_mode(const uint8_t *data, size_t size)
{
    char *raw = malloc(size ? size : 1);
    REQUIRE(raw);
    memcpy(raw, data, size);
    size_t cap = size + 1;
    char *out = malloc(cap);
    REQUIRE(out);
    const char *why = NULL;
    long n = sol_target_check(raw, size, out, cap, &why);
    if (n < 0) {
        REQUIRE(n == -1 && why && why[0]);
    } else {
        REQUIRE((size_t)n < cap && out[n] == '\0' && strlen(out) == (size_t)n);
        REQUIRE(out[0] == '/');
        for (long i = 0; i < n; i++)
            REQUIRE(pchar_or_slash((unsigned char)out[i]) && out[i] != '%');
        REQUIRE(!strstr(out, "//"));
        for (const char *s = out; s; s = strchr(s + 1, '/')) {
            const char *e = strchr(s + 1, '/');
            size_t sl = e ? (size_t)(e - s - 1) : strlen(s + 1);
            REQUIRE(!(sl == 1 && s[1] == '.'));
            REQUIRE(!(sl == 2 && s[1] == '.' && s[2] == '.'));
            REQUIRE(sl > 0 || n == 1);
        }
        /* Its own normal form. */
        char *again = malloc(cap);
        REQUIRE(again);
        REQUIRE(sol_target_check(out, (size_t)n, again, cap, &why) == n && !strcmp(again, out));
        free(again);
        /* The same bytes as libmicrohttpd decodes the path (before '?'). */
        const char *q = memchr(raw, '?', size);
        size_t plen = q ? (size_t)(q - raw) : size;
        char *m = malloc(plen + 1);
        REQUIRE(m);
        size_t ml = mhd_unescape(raw, plen, m);
        REQUIRE(ml == (size_t)n && memcmp(m, out, ml) == 0);
        free(m);
    }
    free(out);
    free(raw);
}

static void header_mode(const uint8_t *data, size_t size)
{
    /* In place, as 0.9.75: "name\0 value\0\0" per line (':' -> NUL,
     * CRLF -> two NULs), fields pointing into one buffer. */
    char *buf = malloc(size * 2 + 8);
    REQUIRE(buf);
    struct sol_hdr_field f[64];
    size_t nf = 0, o = 0, i = 0;
    int space_before_colon = 0;
    while (i < size && nf < 64) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t ll = nl ? (size_t)(nl - (data + i)) : size - i;
        const uint8_t *colon = memchr(data + i, ':', ll);
        if (colon) {
            size_t kl = (size_t)(colon - (data + i));
            f[nf].name = buf + o;
            memcpy(buf + o, data + i, kl);
            f[nf].name_len = strnlen(buf + o, kl);
            /* What the check can see of the name (0.9.75 stops at a NUL). */
            for (size_t k = 0; k < f[nf].name_len; k++)
                space_before_colon |= f[nf].name[k] == ' ';
            o += kl;
            buf[o++] = '\0';
            size_t vl = ll - kl - 1;
            f[nf].value = buf + o;
            memcpy(buf + o, colon + 1, vl);
            f[nf].value_len = strnlen(buf + o, vl);
            o += vl;
            buf[o++] = '\0';
            buf[o++] = '\0';
            nf++;
        }
        i += ll + 1;
    }
    char msg[160];
    unsigned st = sol_hdr_check_request(f, nf, 1, msg, sizeof msg);
    REQUIRE(st == 0 || st == 400 || st == 501);
    if (st) {
        for (const char *p = msg; *p; p++)
            REQUIRE((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
    } else {
        REQUIRE(!space_before_colon);
        for (size_t k = 0; k < nf; k++) {
            REQUIRE(f[k].name_len > 0);
            for (size_t j = 0; j < f[k].value_len; j++)
                REQUIRE(f[k].value[j] != '\r' && f[k].value[j] != '\n' && f[k].value[j] != 0);
        }
    }
    /* The response side must not crash on the same bytes either. */
    for (size_t k = 0; k < nf; k++) {
        (void)sol_hdr_response_keep(f[k].name, f[k].name_len, f[k].value, f[k].value_len);
        (void)sol_hdr_list_has(f[k].value, f[k].value_len, f[k].name, f[k].name_len);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        target_mode(data + 1, size - 1);
    else
        header_mode(data + 1, size - 1);
    return 0;
}
