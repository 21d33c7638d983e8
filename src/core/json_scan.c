#include "sollol/json_scan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) && !defined(SOL_JSON_NO_SIMD)
#include <emmintrin.h>
#endif

typedef unsigned char uchar;

/* ------------------------------------------------------------------------ */
/* Character classes                                                         */
/* ------------------------------------------------------------------------ */

/* Inside a string: 0 for bytes that need no attention (0x20..0x7f except
 * '"' and '\\'), 1 for everything else. */
/* clang-format off */
static const uchar str_special[256] = {
    /* 0x00..0x1f: control characters */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x20..0x3f: '"' is 0x22 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x40..0x5f: '\\' is 0x5c */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    /* 0x60..0x7f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x80..0xff: UTF-8 lead and continuation bytes */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};
/* clang-format on */

/* After a backslash: the one-letter escapes, and 'u'. */
enum { ESC_BAD = 0, ESC_SIMPLE = 1, ESC_U = 2 };
static const uchar esc_class[256] = {
    ['"'] = ESC_SIMPLE, ['\\'] = ESC_SIMPLE, ['/'] = ESC_SIMPLE,
    ['b'] = ESC_SIMPLE, ['f'] = ESC_SIMPLE,  ['n'] = ESC_SIMPLE,
    ['r'] = ESC_SIMPLE, ['t'] = ESC_SIMPLE,  ['u'] = ESC_U,
};

static inline int is_ws(uchar c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(uchar c)
{
    return (unsigned)(c - '0') < 10;
}

static inline int hex_val(uchar c)
{
    if (is_digit(c))
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static inline const uchar *skip_ws(const uchar *p, const uchar *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Returns the first byte in [p, end) that is special inside a string (see
 * str_special), or end. This is where long prompts spend their time, so it
 * looks at 16 (SSE2) or 8 (portable SWAR) bytes per step. */
static inline const uchar *skip_plain(const uchar *p, const uchar *end)
{
#if defined(__SSE2__) && !defined(SOL_JSON_NO_SIMD)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* A signed compare against 0x20 catches both the control characters
         * and every byte >= 0x80 (negative as signed). */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                 _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(m);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
        /* Exact "any byte is zero / below 0x20 / has its high bit" tests. */
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v;
        if (hit & highs)
            break;
        p += 8;
    }
#endif
    while (p < end && !str_special[*p])
        p++;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                                */
/* ------------------------------------------------------------------------ */

enum err_kind {
    E_EOF,      /* input ended inside a value */
    E_CHAR,     /* unexpected character where a value or punctuation was due */
    E_TRAILING, /* something after the top-level value */
    E_CTRL,     /* raw control character in a string */
    E_UTF8,     /* invalid UTF-8 in a string */
    E_ESCAPE,   /* unknown backslash escape */
    E_UESCAPE,  /* \u not followed by four hex digits */
    E_NUMBER,   /* number not in the JSON grammar */
    E_DEPTH,    /* nesting too deep */
};

struct scan_err {
    const uchar *at;
    enum err_kind kind;
};

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80): 2..4, 0 if it
 * is invalid (Unicode 15, table 3-7: no overlongs, no surrogates, nothing
 * above U+10FFFF), -1 if it is valid so far but cut off by end. */
static inline int utf8_seq_len(const uchar *p, const uchar *end)
{
    uchar c = p[0];
    size_t avail = (size_t)(end - p);
    uchar lo = 0x80, hi = 0xBF;
    int n;
    if (c < 0xC2)
        return 0; /* continuation byte, or overlong 2-byte lead */
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < 2)
        return -1;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++) {
        if ((size_t)i >= avail)
            return -1;
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    return n;
}

/* p is just past the opening quote. Returns the byte after the closing
 * quote, or NULL with *e filled. */
static const uchar *scan_string(const uchar *p, const uchar *end, struct scan_err *e)
{
    for (;;) {
        p = skip_plain(p, end);
        if (p >= end)
            goto eof;
        uchar c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            /* Escapes often come in runs ("\n\n", "\u4e2d\u6587"). */
            do {
                if (end - p < 2)
                    goto eof;
                uchar k = esc_class[p[1]];
                if (k == ESC_SIMPLE) {
                    p += 2;
                } else if (k == ESC_U) {
                    if (end - p >= 6 && hex_val(p[2]) >= 0 && hex_val(p[3]) >= 0 &&
                        hex_val(p[4]) >= 0 && hex_val(p[5]) >= 0) {
                        p += 6;
                        continue;
                    }
                    for (int i = 2; i < 6; i++) {
                        if (p + i >= end)
                            goto eof;
                        if (hex_val(p[i]) < 0)
                            break;
                    }
                    e->at = p;
                    e->kind = E_UESCAPE;
                    return NULL;
                } else {
                    e->at = p;
                    e->kind = E_ESCAPE;
                    return NULL;
                }
            } while (p < end && *p == '\\');
            continue;
        }
        if (c < 0x20) {
            e->at = p;
            e->kind = E_CTRL;
            return NULL;
        }
        /* Non-ASCII: validate whole sequences back to back, since text in
         * other scripts is mostly made of them. The common 2- and 3-byte
         * forms (Latin, Cyrillic, CJK, ...) get a short path. */
        do {
            c = *p;
            if (end - p >= 3) {
                if (c >= 0xE1 && c <= 0xEF && c != 0xED) {
                    if ((p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
                        p += 3;
                        continue;
                    }
                } else if (c >= 0xC2 && c <= 0xDF && (p[1] & 0xC0) == 0x80) {
                    p += 2;
                    continue;
                }
            }
            int n = utf8_seq_len(p, end);
            if (n < 0)
                goto eof;
            if (n == 0) {
                e->at = p;
                e->kind = E_UTF8;
                return NULL;
            }
            p += n;
        } while (p < end && *p >= 0x80);
    }
eof:
    e->at = end;
    e->kind = E_EOF;
    return NULL;
}

/* p is at '-' or a digit. Returns the byte after the number, or NULL. */
static const uchar *scan_number(const uchar *p, const uchar *end, struct scan_err *e)
{
    if (*p == '-')
        p++;
    if (p >= end)
        goto eof;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (++p < end && is_digit(*p))
            ;
    } else {
        goto bad;
    }
    if (p < end && *p == '.') {
        if (++p >= end)
            goto eof;
        if (!is_digit(*p))
            goto bad;
        while (++p < end && is_digit(*p))
            ;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (++p >= end)
            goto eof;
        if (*p == '+' || *p == '-')
            if (++p >= end)
                goto eof;
        if (!is_digit(*p))
            goto bad;
        while (++p < end && is_digit(*p))
            ;
    }
    return p;
eof:
    e->at = end;
    e->kind = E_EOF;
    return NULL;
bad:
    e->at = p;
    e->kind = E_NUMBER;
    return NULL;
}

static const uchar *scan_literal(const uchar *p, const uchar *end, const char *word,
                                 struct scan_err *e)
{
    for (const char *w = word; *w; w++, p++) {
        if (p >= end) {
            e->at = end;
            e->kind = E_EOF;
            return NULL;
        }
        if (*p != (uchar)*w) {
            e->at = p;
            e->kind = E_CHAR;
            return NULL;
        }
    }
    return p;
}

static enum sol_json_type type_of(uchar c)
{
    switch (c) {
    case '{':
        return SOL_JSON_OBJECT;
    case '[':
        return SOL_JSON_ARRAY;
    case '"':
        return SOL_JSON_STRING;
    case 't':
        return SOL_JSON_TRUE;
    case 'f':
        return SOL_JSON_FALSE;
    case 'n':
        return SOL_JSON_NULL;
    default:
        return SOL_JSON_NUMBER;
    }
}

static const char *type_name(enum sol_json_type t)
{
    static const char *const names[] = {"null",     "false",    "true",     "a number",
                                        "a string", "an array", "an object"};
    return names[t];
}

static void describe_byte(char *out, size_t outlen, uchar c)
{
    if (c > 0x20 && c < 0x7f && c != '\'')
        snprintf(out, outlen, "character '%c'", c);
    else
        snprintf(out, outlen, "byte 0x%02x", c);
}

static int fail(const uchar *base, const struct scan_err *e, int max_depth, char *err,
                size_t errlen)
{
    if (!err || errlen == 0)
        return e->kind == E_DEPTH ? SOL_JSON_EDEPTH : SOL_JSON_EINVAL;
    size_t off = (size_t)(e->at - base);
    char what[24] = "";
    if (e->kind != E_EOF && e->kind != E_DEPTH)
        describe_byte(what, sizeof what, *e->at);
    switch (e->kind) {
    case E_EOF:
        snprintf(err, errlen, "invalid JSON: unexpected end of input at offset %zu", off);
        break;
    case E_CHAR:
        snprintf(err, errlen, "invalid JSON: unexpected %s at offset %zu", what, off);
        break;
    case E_TRAILING:
        snprintf(err, errlen, "invalid JSON: unexpected %s after the value at offset %zu", what,
                 off);
        break;
    case E_CTRL:
        snprintf(err, errlen,
                 "invalid JSON: unescaped control character 0x%02x in string at offset %zu", *e->at,
                 off);
        break;
    case E_UTF8:
        snprintf(err, errlen, "invalid JSON: invalid UTF-8 in string at offset %zu", off);
        break;
    case E_ESCAPE:
        snprintf(err, errlen, "invalid JSON: invalid escape in string at offset %zu", off);
        break;
    case E_UESCAPE:
        snprintf(err, errlen, "invalid JSON: \\u not followed by 4 hex digits at offset %zu", off);
        break;
    case E_NUMBER:
        snprintf(err, errlen, "invalid JSON: invalid number, unexpected %s at offset %zu", what,
                 off);
        break;
    case E_DEPTH:
        snprintf(err, errlen, "invalid JSON: nesting exceeds max depth %d at offset %zu", max_depth,
                 off);
        break;
    }
    return e->kind == E_DEPTH ? SOL_JSON_EDEPTH : SOL_JSON_EINVAL;
}

/*
 * One pass, no recursion. `stack` holds one bit per open container (1 =
 * object) so that after a value the loop knows which punctuation may follow.
 * Top-level members are recognised by depth == 1 inside a top-level object.
 */
int sol_json_scan_object(const char *buf, size_t len, int max_depth, sol_json_member_cb cb,
                         void *ud, char *err, size_t errlen)
{
    uint64_t stack[SOL_JSON_DEPTH_LIMIT / 64];
    static const uchar nothing[1];
    const uchar *base = buf ? (const uchar *)buf : nothing;
    const uchar *p = base, *end = base + (buf ? len : 0);
    const uchar *key_start = NULL, *key_end = NULL, *val_start = NULL;
    struct scan_err e;
    int depth = 0, top_object = 0;

    if (err && errlen)
        err[0] = '\0';
    if (max_depth < 1)
        max_depth = 1;
    if (max_depth > SOL_JSON_DEPTH_LIMIT)
        max_depth = SOL_JSON_DEPTH_LIMIT;

    p = skip_ws(p, end);
    if (p >= end)
        goto eof;
    top_object = *p == '{';

value: /* p < end, at the first byte of a value */
    switch (*p) {
    case '{':
    case '[': {
        int is_obj = *p == '{';
        if (depth >= max_depth) {
            e.at = p;
            e.kind = E_DEPTH;
            return fail(base, &e, max_depth, err, errlen);
        }
        if (is_obj)
            stack[depth >> 6] |= (uint64_t)1 << (depth & 63);
        else
            stack[depth >> 6] &= ~((uint64_t)1 << (depth & 63));
        depth++;
        p = skip_ws(p + 1, end);
        if (p >= end)
            goto eof;
        if (*p == (is_obj ? '}' : ']')) {
            depth--;
            p++;
            goto after_value;
        }
        if (is_obj)
            goto member;
        goto value;
    }
    case '"':
        if (!(p = scan_string(p + 1, end, &e)))
            return fail(base, &e, max_depth, err, errlen);
        goto after_value;
    case 't':
        p = scan_literal(p, end, "true", &e);
        break;
    case 'f':
        p = scan_literal(p, end, "false", &e);
        break;
    case 'n':
        p = scan_literal(p, end, "null", &e);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        p = scan_number(p, end, &e);
        break;
    default:
        e.at = p;
        e.kind = E_CHAR;
        return fail(base, &e, max_depth, err, errlen);
    }
    if (!p)
        return fail(base, &e, max_depth, err, errlen);

after_value: /* a value (or a container) just ended at p */
    if (depth == 0) {
        p = skip_ws(p, end);
        if (p < end) {
            e.at = p;
            e.kind = E_TRAILING;
            return fail(base, &e, max_depth, err, errlen);
        }
        if (!top_object) {
            if (err && errlen) {
                const uchar *v = skip_ws(base, end);
                snprintf(err, errlen, "JSON value is %s, not an object", type_name(type_of(*v)));
            }
            return SOL_JSON_ENOTOBJECT;
        }
        return SOL_JSON_OK;
    }
    if (depth == 1 && top_object && cb) {
        struct sol_json_span k = {(const char *)key_start, (size_t)(key_end - key_start),
                                  SOL_JSON_STRING};
        struct sol_json_span v = {(const char *)val_start, (size_t)(p - val_start),
                                  type_of(*val_start)};
        int rc = cb(ud, &k, &v);
        if (rc)
            return rc;
    }
    p = skip_ws(p, end);
    if (p >= end)
        goto eof;
    if (stack[(depth - 1) >> 6] & ((uint64_t)1 << ((depth - 1) & 63))) {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p >= end)
                goto eof;
            goto member;
        }
        if (*p == '}') {
            depth--;
            p++;
            goto after_value;
        }
    } else {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p >= end)
                goto eof;
            goto value;
        }
        if (*p == ']') {
            depth--;
            p++;
            goto after_value;
        }
    }
    e.at = p;
    e.kind = E_CHAR;
    return fail(base, &e, max_depth, err, errlen);

member: /* p < end, where a key must start */
    if (*p != '"') {
        e.at = p;
        e.kind = E_CHAR;
        return fail(base, &e, max_depth, err, errlen);
    }
    {
        const uchar *k = p;
        if (!(p = scan_string(p + 1, end, &e)))
            return fail(base, &e, max_depth, err, errlen);
        if (depth == 1) { /* only top-level members are reported */
            key_start = k;
            key_end = p;
        }
    }
    p = skip_ws(p, end);
    if (p >= end)
        goto eof;
    if (*p != ':') {
        e.at = p;
        e.kind = E_CHAR;
        return fail(base, &e, max_depth, err, errlen);
    }
    p = skip_ws(p + 1, end);
    if (p >= end)
        goto eof;
    if (depth == 1)
        val_start = p;
    goto value;

eof:
    e.at = end;
    e.kind = E_EOF;
    return fail(base, &e, max_depth, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Walking validated spans                                                   */
/* ------------------------------------------------------------------------ */

/* p is just past an opening quote of a validated string: the closing quote
 * is the first '"' preceded by an even number of backslashes. Returns the
 * byte after it, or NULL if there is none before end. */
static const uchar *skip_string(const uchar *p, const uchar *end)
{
    while (p < end) {
        const uchar *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return NULL;
        const uchar *b = q;
        while (b > p && b[-1] == '\\')
            b--;
        if (((q - b) & 1) == 0)
            return q + 1;
        p = q + 1;
    }
    return NULL;
}

/* Returns the byte after the value starting at p, or NULL if it is not
 * complete before end. Containers are skipped by counting brackets outside
 * strings, which is enough once the document has been validated. */
static const uchar *skip_value(const uchar *p, const uchar *end)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"':
        return skip_string(p + 1, end);
    case '{':
    case '[': {
        size_t depth = 0;
        while (p < end) {
            uchar c = *p;
            if (c == '"') {
                if (!(p = skip_string(p + 1, end)))
                    return NULL;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    case 't':
    case 'n':
        return end - p >= 4 ? p + 4 : NULL;
    case 'f':
        return end - p >= 5 ? p + 5 : NULL;
    default: {
        const uchar *s = p;
        while (p < end &&
               (is_digit(*p) || *p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E'))
            p++;
        return p > s ? p : NULL;
    }
    }
}

static int is_container(const struct sol_json_span *s, uchar open, uchar close)
{
    return s && s->p && s->len >= 2 && (uchar)s->p[0] == open && (uchar)s->p[s->len - 1] == close;
}

int sol_json_object_next(const struct sol_json_span *obj, size_t *pos, struct sol_json_span *key,
                         struct sol_json_span *value)
{
    if (!is_container(obj, '{', '}') || !pos)
        return 0;
    const uchar *base = (const uchar *)obj->p, *end = base + obj->len - 1; /* at the '}' */
    if (*pos >= obj->len - 1)
        return 0;
    const uchar *p = base + (*pos == 0 ? 1 : *pos);
    p = skip_ws(p, end);
    if (p < end && *p == ',' && *pos != 0)
        p = skip_ws(p + 1, end);
    if (p >= end || *p != '"')
        goto done;
    const uchar *k = p;
    if (!(p = skip_string(p + 1, end)))
        goto done;
    key->p = (const char *)k;
    key->len = (size_t)(p - k);
    key->type = SOL_JSON_STRING;
    p = skip_ws(p, end);
    if (p >= end || *p != ':')
        goto done;
    p = skip_ws(p + 1, end);
    const uchar *v = p;
    if (!(p = skip_value(p, end)))
        goto done;
    value->p = (const char *)v;
    value->len = (size_t)(p - v);
    value->type = type_of(*v);
    *pos = (size_t)(p - base);
    return 1;
done:
    *pos = obj->len - 1;
    return 0;
}

int sol_json_array_next(const struct sol_json_span *arr, size_t *pos, struct sol_json_span *elem)
{
    if (!is_container(arr, '[', ']') || !pos)
        return 0;
    const uchar *base = (const uchar *)arr->p, *end = base + arr->len - 1; /* at the ']' */
    if (*pos >= arr->len - 1)
        return 0;
    const uchar *p = base + (*pos == 0 ? 1 : *pos);
    p = skip_ws(p, end);
    if (p < end && *p == ',' && *pos != 0)
        p = skip_ws(p + 1, end);
    const uchar *v = p;
    if (p >= end || !(p = skip_value(p, end))) {
        *pos = arr->len - 1;
        return 0;
    }
    elem->p = (const char *)v;
    elem->len = (size_t)(p - v);
    elem->type = type_of(*v);
    *pos = (size_t)(p - base);
    return 1;
}

int sol_json_object_get(const struct sol_json_span *obj, const char *name,
                        struct sol_json_span *value)
{
    struct sol_json_span k, v;
    size_t pos = 0;
    int found = 0;
    while (sol_json_object_next(obj, &pos, &k, &v)) {
        if (sol_json_key_equals(&k, name)) {
            *value = v;
            found = 1;
        }
    }
    return found;
}

/* ------------------------------------------------------------------------ */
/* Decoding strings                                                          */
/* ------------------------------------------------------------------------ */

static int read_u4(const uchar *p, const uchar *end)
{
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    int v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hex_val(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Decodes the escape at p (p[0] == '\\') into a code point, as Go does:
 * a surrogate pair combines, a lone surrogate becomes U+FFFD. Returns the
 * bytes consumed, or 0 if the escape is malformed. */
static int decode_escape(const uchar *p, const uchar *end, uint32_t *cp)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        *cp = p[1];
        return 2;
    case 'b':
        *cp = '\b';
        return 2;
    case 'f':
        *cp = '\f';
        return 2;
    case 'n':
        *cp = '\n';
        return 2;
    case 'r':
        *cp = '\r';
        return 2;
    case 't':
        *cp = '\t';
        return 2;
    case 'u': {
        int u = read_u4(p, end);
        if (u < 0)
            return 0;
        if (u < 0xD800 || u > 0xDFFF) {
            *cp = (uint32_t)u;
            return 6;
        }
        int lo = u <= 0xDBFF ? read_u4(p + 6, end) : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            *cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            return 12;
        }
        *cp = 0xFFFD;
        return 6;
    }
    default:
        return 0;
    }
}

static int utf8_encode(uint32_t cp, uchar out[4])
{
    if (cp < 0x80) {
        out[0] = (uchar)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uchar)(0xC0 | cp >> 6);
        out[1] = (uchar)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uchar)(0xE0 | cp >> 12);
        out[1] = (uchar)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uchar)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uchar)(0xF0 | cp >> 18);
    out[1] = (uchar)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uchar)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uchar)(0x80 | (cp & 0x3F));
    return 4;
}

int sol_json_decode_escape(const char *p, const char *end, unsigned char out[4], int *outlen)
{
    uint32_t cp;
    int used = decode_escape((const uchar *)p, (const uchar *)end, &cp);
    if (used)
        *outlen = utf8_encode(cp, out);
    return used;
}

static int is_string(const struct sol_json_span *s)
{
    return is_container(s, '"', '"');
}

long sol_json_string_decode(const struct sol_json_span *s, char *out, size_t outlen)
{
    if (!is_string(s) || !out || outlen == 0)
        return -1;
    const uchar *p = (const uchar *)s->p + 1, *end = (const uchar *)s->p + s->len - 1;
    size_t n = 0;
    while (p < end) {
        const uchar *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        if (run >= outlen - n)
            return -1;
        memcpy(out + n, p, run);
        n += run;
        p += run;
        if (!bs)
            break;
        uint32_t cp;
        int used = decode_escape(p, end, &cp);
        if (!used)
            return -1;
        uchar tmp[4];
        int w = utf8_encode(cp, tmp);
        if ((size_t)w >= outlen - n)
            return -1;
        memcpy(out + n, tmp, (size_t)w);
        n += (size_t)w;
        p += used;
    }
    out[n] = '\0';
    return (long)n;
}

int sol_json_key_equals(const struct sol_json_span *key, const char *name)
{
    if (!is_string(key) || !name)
        return 0;
    const uchar *p = (const uchar *)key->p + 1, *end = (const uchar *)key->p + key->len - 1;
    const uchar *n = (const uchar *)name;
    size_t raw = (size_t)(end - p);
    if (!memchr(p, '\\', raw))
        return strlen(name) == raw && memcmp(p, name, raw) == 0;
    while (p < end) {
        if (*p != '\\') {
            if (*n == '\0' || *n != *p)
                return 0;
            n++;
            p++;
            continue;
        }
        uint32_t cp;
        int used = decode_escape(p, end, &cp);
        if (!used || cp == 0)
            return 0;
        uchar tmp[4];
        int w = utf8_encode(cp, tmp);
        for (int i = 0; i < w; i++)
            if (*n++ != tmp[i])
                return 0;
        p += used;
    }
    return *n == '\0';
}

/* Decodes one code point of a raw (UTF-8) key byte sequence; returns the
 * bytes consumed or 0. The key was validated, so this only guards bounds. */
static int utf8_decode(const uchar *p, const uchar *end, uint32_t *cp)
{
    int n = utf8_seq_len(p, end);
    if (n <= 0)
        return 0;
    uint32_t v = p[0] & (0x7F >> n);
    for (int i = 1; i < n; i++)
        v = v << 6 | (p[i] & 0x3F);
    *cp = v;
    return n;
}

int sol_json_key_equals_fold(const struct sol_json_span *key, const char *name)
{
    if (!is_string(key) || !name)
        return 0;
    for (const char *c = name; *c; c++)
        if ((uchar)*c >= 0x80)
            return sol_json_key_equals(key, name);
    const uchar *p = (const uchar *)key->p + 1, *end = (const uchar *)key->p + key->len - 1;
    const uchar *n = (const uchar *)name;
    while (p < end) {
        uint32_t cp;
        int used;
        if (*p == '\\') {
            used = decode_escape(p, end, &cp);
        } else if (*p < 0x80) {
            cp = *p;
            used = 1;
        } else {
            used = utf8_decode(p, end, &cp);
        }
        if (!used || *n == '\0')
            return 0;
        if (cp == 0x212A) /* KELVIN SIGN */
            cp = 'k';
        else if (cp == 0x017F) /* LATIN SMALL LETTER LONG S */
            cp = 's';
        if (cp >= 0x80)
            return 0;
        uchar a = (uchar)cp, b = *n;
        if (a >= 'A' && a <= 'Z')
            a |= 0x20;
        if (b >= 'A' && b <= 'Z')
            b |= 0x20;
        if (a != b)
            return 0;
        n++;
        p += used;
    }
    return *n == '\0';
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

/* Nonzero when the span is exactly one number in the JSON grammar. */
static int is_number(const struct sol_json_span *n)
{
    if (!n || !n->p || n->len == 0)
        return 0;
    const uchar *p = (const uchar *)n->p, *end = p + n->len;
    struct scan_err e;
    if (*p != '-' && !is_digit(*p))
        return 0;
    return scan_number(p, end, &e) == end;
}

int sol_json_number_double(const struct sol_json_span *n, double *out)
{
    if (!is_number(n) || !out)
        return -1;
    /* strtod needs a terminated copy: the span is usually followed by more
     * JSON, but a top-level number may end exactly at the buffer's end. */
    char small[128];
    char *copy = n->len < sizeof small ? small : malloc(n->len + 1);
    if (!copy)
        return -1;
    memcpy(copy, n->p, n->len);
    copy[n->len] = '\0';
    char *endp;
    int saved_errno = errno;
    errno = 0;
    double v = strtod(copy, &endp);
    int ok = endp == copy + n->len && !(errno == ERANGE && isinf(v));
    errno = saved_errno;
    if (copy != small)
        free(copy);
    if (!ok)
        return -1;
    *out = v;
    return 0;
}

int sol_json_number_int64(const struct sol_json_span *n, long long *out)
{
    if (!is_number(n) || !out)
        return -1;
    const uchar *p = (const uchar *)n->p, *end = p + n->len;
    int neg = *p == '-';
    if (neg)
        p++;
    /* Magnitude limit: 2^63 - 1, or 2^63 for a negative number. */
    unsigned long long limit = (unsigned long long)LLONG_MAX + (unsigned)neg, v = 0;
    for (; p < end; p++) {
        if (!is_digit(*p))
            return -1; /* fraction or exponent */
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    else
        *out = (long long)v;
    return 0;
}
