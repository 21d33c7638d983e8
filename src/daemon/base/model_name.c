/*
 * model_name.c - Ollama model name normalisation (see model_name.h).
 *
 * Parsing mirrors Ollama's ParseNameBare: the tag is cut at the last ':' if
 * it comes after the last '/', then parts are cut from the right at '/'.
 * Everything happens on spans of the input; the result is assembled in a
 * local buffer so `out` may alias `in`.
 */
#include "base/model_name.h"

#include <string.h>

#define DEFAULT_HOST "registry.ollama.ai"
#define DEFAULT_NS   "library"
#define DEFAULT_TAG  "latest"

enum part_kind { PART_HOST, PART_NAMESPACE, PART_MODEL, PART_TAG };

struct span {
    const char *p;
    size_t n;
};

static int is_alnum_us(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Ollama's isValidPart(): length bounds, first byte [A-Za-z0-9_], then the
 * part's alphabet. */
static int valid_part(enum part_kind kind, struct span s)
{
    size_t max = kind == PART_HOST ? 350 : 80;
    if (s.n < 1 || s.n > max || !is_alnum_us((unsigned char)s.p[0]))
        return 0;
    for (size_t i = 1; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (is_alnum_us(c) || c == '-')
            continue;
        if (c == '.' && kind != PART_NAMESPACE)
            continue;
        if (c == ':' && kind == PART_HOST)
            continue;
        return 0;
    }
    return 1;
}

static int span_eq_ci(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

/* Cuts `s` at its last `sep`: *after gets the right part, s keeps the left.
 * Returns 0 when there is no `sep`. */
static int cut_last(struct span *s, char sep, struct span *after)
{
    for (size_t i = s->n; i-- > 0;) {
        if (s->p[i] == sep) {
            after->p = s->p + i + 1;
            after->n = s->n - i - 1;
            s->n = i;
            return 1;
        }
    }
    return 0;
}

/* Appends the lowercased span; returns 0 when it does not fit (keeping room
 * for the NUL). */
static int put(char *buf, size_t cap, size_t *len, struct span s)
{
    if (s.n >= cap - *len)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        buf[*len + i] = (char)lower((unsigned char)s.p[i]);
    *len += s.n;
    return 1;
}

static int put_char(char *buf, size_t cap, size_t *len, char c)
{
    struct span s = {&c, 1};
    return put(buf, cap, len, s);
}

/* Writes the canonical form into buf (cap bytes); returns its length, or
 * -1 when invalid or too long. Reads `in` only: out may alias it. */
static long canonical(const char *in, char *buf, size_t cap)
{
    size_t n = strnlen(in, SOL_MODEL_INPUT_MAX + 1);
    if (n == 0 || n > SOL_MODEL_INPUT_MAX)
        return -1;

    struct span rest = {in, n};
    struct span host = {DEFAULT_HOST, sizeof DEFAULT_HOST - 1};
    struct span ns = {DEFAULT_NS, sizeof DEFAULT_NS - 1};
    struct span model, tag = {DEFAULT_TAG, sizeof DEFAULT_TAG - 1};

    /* A ':' is a tag separator only after the last '/': before it, it is a
     * host's port. A present separator promises a non-empty part, which
     * valid_part() enforces (empty spans are invalid). */
    const char *slash = memrchr(in, '/', n);
    const char *colon = memrchr(in, ':', n);
    if (colon && (!slash || colon > slash)) {
        tag.p = colon + 1;
        tag.n = (size_t)(in + n - tag.p);
        rest.n = (size_t)(colon - in);
    }
    if (!cut_last(&rest, '/', &model)) {
        model = rest;
    } else if (!cut_last(&rest, '/', &ns)) {
        ns = rest;
    } else {
        /* Whatever is left is the host; Ollama drops a scheme. A '/' left in
         * it (4 or more parts) makes it invalid. */
        host = rest;
        for (size_t i = 0; i + 3 <= host.n; i++) {
            if (memcmp(host.p + i, "://", 3) == 0) {
                host.p += i + 3;
                host.n -= i + 3;
                break;
            }
        }
    }
    if (!valid_part(PART_HOST, host) || !valid_part(PART_NAMESPACE, ns) ||
        !valid_part(PART_MODEL, model) || !valid_part(PART_TAG, tag))
        return -1;

    /* DisplayShortest: drop the default host, and the default namespace
     * when the host is the default one. */
    size_t len = 0;
    int ok = 1;
    if (!span_eq_ci(host, DEFAULT_HOST)) {
        ok = put(buf, cap, &len, host) && put_char(buf, cap, &len, '/') &&
             put(buf, cap, &len, ns) && put_char(buf, cap, &len, '/');
    } else if (!span_eq_ci(ns, DEFAULT_NS)) {
        ok = put(buf, cap, &len, ns) && put_char(buf, cap, &len, '/');
    }
    ok = ok && put(buf, cap, &len, model) && put_char(buf, cap, &len, ':') &&
         put(buf, cap, &len, tag);
    if (!ok)
        return -1;
    buf[len] = '\0';
    return (long)len;
}

int sol_model_canonical(const char *in, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return -1;
    if (!in) {
        out[0] = '\0';
        return -1;
    }
    char buf[SOL_MODEL_NAME_MAX];
    long len = canonical(in, buf, outlen < sizeof buf ? outlen : sizeof buf);
    if (len < 0) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, buf, (size_t)len + 1);
    return 0;
}

uint64_t sol_model_key(const char *canonical)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (const unsigned char *p = (const unsigned char *)canonical; p && *p; p++) {
        h ^= lower(*p);
        h *= 0x100000001b3ull; /* FNV prime */
    }
    return h ? h : 1;
}
