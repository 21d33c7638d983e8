/*
 * sbuf.c - the simulators' growable byte buffer and JSON string literals
 * (sbuf.h).
 */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sollol/buf.h"

void sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        abort(); /* out of memory in a test tool: nothing sensible to do */
    b->p = p;
    b->cap = cap;
}

void sb_put(struct sbuf *b, const void *d, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

void sb_putc(struct sbuf *b, char c)
{
    sb_reserve(b, 1);
    b->p[b->len++] = c;
    b->p[b->len] = 0;
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_u64(struct sbuf *b, uint64_t v)
{
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, tmp + i, (size_t)(24 - i));
}

void sb_i64(struct sbuf *b, int64_t v)
{
    if (v < 0) {
        sb_putc(b, '-');
        sb_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        sb_u64(b, (uint64_t)v);
    }
}

void str_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = 0;
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (len > n)
        return 0;
    uint32_t v = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return len;
}

/* ASCII that Go's encoder escapes with a backslash and one letter. */
static const char SHORT_FROM[] = "\"\\\n\r\t\b\f";
static const char SHORT_TO[] = "\"\\nrtbf";

void sb_json_strn(struct sbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    sb_reserve(b, n + 2);
    sb_putc(b, '"');
    size_t start = 0, i = 0;
    while (i < n) {
        unsigned c = s[i];
        char e[6];
        size_t elen = 6, adv = 1; /* escape written, input bytes replaced */
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
                i++;
                continue;
            }
            const char *q = memchr(SHORT_FROM, (int)c, sizeof SHORT_FROM - 1);
            if (q) {
                e[0] = '\\';
                e[1] = SHORT_TO[q - SHORT_FROM];
                elen = 2;
            } else {
                /* control characters, and <, >, & for HTML safety */
                memcpy(e, "\\u00", 4);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
            }
        } else {
            uint32_t cp = 0;
            adv = utf8_len(s + i, n - i, &cp);
            if (adv == 0) {
                memcpy(e, "\\ufffd", 6); /* one invalid byte */
                adv = 1;
            } else if (cp == 0x2028 || cp == 0x2029) {
                memcpy(e, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            } else {
                i += adv;
                continue;
            }
        }
        sb_put(b, s + start, i - start);
        sb_put(b, e, elen);
        i += adv;
        start = i;
    }
    sb_put(b, s + start, n - start);
    sb_putc(b, '"');
}

void sb_json_str(struct sbuf *b, const char *s)
{
    sb_json_strn(b, s ? s : "", s ? strlen(s) : 0);
}

void sb_json_plain(struct sbuf *b, const char *s, size_t n)
{
    /* The daemon's escaper writes exactly llama.cpp's form: borrow it
     * through a scratch buffer rather than keep a second copy of it. */
    struct sol_buf t = {0};
    if (sol_buf_append_json_string(&t, s ? s : "", s ? n : 0) < 0)
        abort(); /* out of memory: see sbuf.h */
    sb_put(b, t.data, t.len);
    sol_buf_free(&t);
}

const char *sb_cstr(struct sbuf *b)
{
    sb_reserve(b, 0);
    b->p[b->len] = 0;
    return b->p;
}
