/*
 * gguf.c - bounded GGUF header reader (see gguf.h).
 */
#include "base/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    T_U8 = 0,
    T_I8,
    T_U16,
    T_I16,
    T_U32,
    T_I32,
    T_F32,
    T_BOOL,
    T_STRING,
    T_ARRAY,
    T_U64,
    T_I64,
    T_F64,
    T_COUNT
};

/* Keys are at most 65535 bytes by the spec; the ones we want are short. */
#define MAX_KEY_LEN  65535
#define KEEP_KEY_LEN 256
#define MAX_DEPTH    2 /* arrays of arrays at most */

struct rd {
    int fd;
    uint64_t size, pos;
    unsigned char buf[16 * 1024]; /* on the caller's stack: reentrant */
    uint64_t buf_at;              /* file offset of buf[0] */
    size_t buf_len;
    const char *path;
    char *err;
    size_t errlen;
    int v1; /* version 1: counts and lengths are u32 */
};

static int fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct rd *r, const char *fmt, ...)
{
    int n = snprintf(r->err, r->errlen, "%s: ", r->path);
    if (n < 0 || (size_t)n >= r->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies n bytes at the current position (n <= sizeof buf). */
static int get(struct rd *r, void *dst, size_t n)
{
    if (n > r->size - r->pos || r->pos > r->size)
        return fail(r, "truncated GGUF header at offset %llu (file is %llu bytes)",
                    (unsigned long long)r->pos, (unsigned long long)r->size);
    if (r->pos < r->buf_at || r->pos + n > r->buf_at + r->buf_len) {
        size_t want = sizeof r->buf;
        if (r->size - r->pos < want)
            want = (size_t)(r->size - r->pos);
        size_t got = 0;
        while (got < want) {
            ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(r->pos + got));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return fail(r, "read error: %s", strerror(errno));
            if (k == 0)
                break;
            got += (size_t)k;
        }
        r->buf_at = r->pos;
        r->buf_len = got;
        if (got < n)
            return fail(r, "truncated GGUF header at offset %llu (file shrank?)",
                        (unsigned long long)r->pos);
    }
    memcpy(dst, r->buf + (r->pos - r->buf_at), n);
    r->pos += n;
    return 0;
}

static int skip(struct rd *r, uint64_t n)
{
    if (n > r->size - r->pos)
        return fail(r,
                    "truncated GGUF header: a value of %llu bytes at offset %llu runs past "
                    "the end of the file (%llu bytes)",
                    (unsigned long long)n, (unsigned long long)r->pos, (unsigned long long)r->size);
    r->pos += n;
    return 0;
}

static uint64_t le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static int get_uint(struct rd *r, size_t n, uint64_t *v)
{
    unsigned char b[8];
    if (get(r, b, n) < 0)
        return -1;
    *v = le(b, n);
    return 0;
}

/* A count or a length: u64, or u32 in version 1. */
static int get_len(struct rd *r, uint64_t *v)
{
    return get_uint(r, r->v1 ? 4 : 8, v);
}

static size_t fixed_size(uint32_t type)
{
    static const unsigned char sz[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < T_COUNT ? sz[type] : 0;
}

/* A string value: its length bounded by what is left of the file; the
 * first keep-1 bytes are copied into out (may be NULL). */
static int get_string(struct rd *r, char *out, size_t keep, uint64_t max_len, const char *what)
{
    uint64_t len;
    if (get_len(r, &len) < 0)
        return -1;
    if (len > max_len || len > r->size - r->pos)
        return fail(r, "%s length %llu at offset %llu is larger than %s", what,
                    (unsigned long long)len, (unsigned long long)r->pos,
                    len > max_len ? "allowed" : "the rest of the file");
    if (out && keep) {
        size_t c = len < keep - 1 ? (size_t)len : keep - 1;
        if (get(r, out, c) < 0)
            return -1;
        out[c] = '\0';
        return skip(r, len - c);
    }
    return skip(r, len);
}

static int skip_value(struct rd *r, uint32_t type, int depth)
{
    size_t fs = fixed_size(type);
    if (fs)
        return skip(r, fs);
    if (type == T_STRING)
        return get_string(r, NULL, 0, UINT64_MAX, "string");
    if (type != T_ARRAY)
        return fail(r, "unknown value type %u at offset %llu", type, (unsigned long long)r->pos);
    if (depth >= MAX_DEPTH)
        return fail(r, "arrays nested too deep at offset %llu", (unsigned long long)r->pos);
    uint64_t et, count;
    if (get_uint(r, 4, &et) < 0 || get_len(r, &count) < 0)
        return -1;
    size_t efs = fixed_size((uint32_t)et);
    if (efs) {
        if (count > (r->size - r->pos) / efs)
            return fail(r, "array of %llu elements at offset %llu is larger than the file",
                        (unsigned long long)count, (unsigned long long)r->pos);
        return skip(r, count * efs);
    }
    if (et != T_STRING && et != T_ARRAY)
        return fail(r, "unknown array element type %llu at offset %llu", (unsigned long long)et,
                    (unsigned long long)r->pos);
    /* Each variable-size element takes at least its length field. */
    if (count > (r->size - r->pos) / (r->v1 ? 4 : 8))
        return fail(r, "array of %llu elements at offset %llu is larger than the file",
                    (unsigned long long)count, (unsigned long long)r->pos);
    for (uint64_t i = 0; i < count; i++)
        if (skip_value(r, (uint32_t)et, depth + 1) < 0)
            return -1;
    return 0;
}

/* Reads an integer of any width (or a bool) as unsigned; -1 for negatives
 * and non-integers. */
static int get_count(struct rd *r, uint32_t type, const char *key, uint64_t *v, int *ok)
{
    *ok = 0;
    size_t fs = fixed_size(type);
    int is_int = type == T_U8 || type == T_I8 || type == T_U16 || type == T_I16 || type == T_U32 ||
                 type == T_I32 || type == T_U64 || type == T_I64;
    if (!is_int)
        return skip_value(r, type, 0);
    uint64_t raw;
    if (get_uint(r, fs, &raw) < 0)
        return -1;
    int is_signed = type == T_I8 || type == T_I16 || type == T_I32 || type == T_I64;
    if (is_signed && fs < 8 && (raw >> (fs * 8 - 1)) & 1)
        return fail(r, "key %s has a negative value", key);
    if (is_signed && fs == 8 && (raw >> 63))
        return fail(r, "key %s has a negative value", key);
    *v = raw;
    *ok = 1;
    return 0;
}

/* "<prefix>.<suffix>" per-architecture counts, matched to the
 * architecture once it is known (keys may come in any order). */
#define MAX_CAND 4
struct cand {
    char prefix[64];
    uint64_t v;
};
struct cands {
    struct cand c[MAX_CAND];
    unsigned n;
};

static void cand_add(struct cands *cs, const char *key, size_t prefix_len, uint64_t v)
{
    if (cs->n >= MAX_CAND || prefix_len >= sizeof cs->c[0].prefix)
        return;
    memcpy(cs->c[cs->n].prefix, key, prefix_len);
    cs->c[cs->n].prefix[prefix_len] = '\0';
    cs->c[cs->n].v = v;
    cs->n++;
}

static uint64_t cand_find(const struct cands *cs, const char *arch)
{
    for (unsigned i = 0; i < cs->n; i++)
        if (strcmp(cs->c[i].prefix, arch) == 0)
            return cs->c[i].v;
    return 0;
}

static int ends_with(const char *s, size_t n, const char *suffix, size_t *prefix_len)
{
    size_t k = strlen(suffix);
    if (n <= k || memcmp(s + n - k, suffix, k) != 0)
        return 0;
    *prefix_len = n - k;
    return 1;
}

int sol_gguf_read_fd(int fd, uint64_t size, const char *path, struct sol_gguf_info *out, char *err,
                     size_t errlen)
{
    struct rd r;
    memset(&r, 0, offsetof(struct rd, buf));
    r.fd = fd;
    r.size = size;
    r.path = path;
    r.err = err;
    r.errlen = errlen;
    r.buf_len = 0;
    r.buf_at = 0;
    memset(out, 0, sizeof *out);
    out->file_type = -1;
    out->file_size = size;
    unsigned char magic[4];
    if (size < 4 || get(&r, magic, 4) < 0)
        return fail(&r, "not a GGUF file (shorter than its magic)");
    if (memcmp(magic, "GGUF", 4) != 0)
        return fail(&r, "not a GGUF file (bad magic %02x %02x %02x %02x)", magic[0], magic[1],
                    magic[2], magic[3]);
    uint64_t v;
    if (get_uint(&r, 4, &v) < 0)
        return -1;
    if (v < 1 || v > 3)
        return fail(&r, "unsupported GGUF version %llu (1 to 3 are known)", (unsigned long long)v);
    out->version = (uint32_t)v;
    r.v1 = v == 1;
    if (get_len(&r, &out->tensor_count) < 0 || get_len(&r, &out->kv_count) < 0)
        return -1;
    /* Every key/value takes at least a key length, a type and one byte. */
    if (out->kv_count > (size - r.pos) / 5)
        return fail(&r, "kv_count %llu is larger than the file can hold",
                    (unsigned long long)out->kv_count);
    if (out->tensor_count > size / 24)
        return fail(&r, "tensor_count %llu is larger than the file can hold",
                    (unsigned long long)out->tensor_count);
    struct cands blocks = {0}, ctx = {0}, emb = {0};
    for (uint64_t i = 0; i < out->kv_count; i++) {
        char key[KEEP_KEY_LEN];
        uint64_t klen;
        uint64_t at = r.pos;
        if (get_len(&r, &klen) < 0)
            return -1;
        if (klen == 0 || klen > MAX_KEY_LEN || klen > r.size - r.pos)
            return fail(&r, "key %llu at offset %llu has an invalid length %llu",
                        (unsigned long long)i, (unsigned long long)at, (unsigned long long)klen);
        size_t keep = klen < sizeof key ? (size_t)klen : sizeof key - 1;
        if (get(&r, key, keep) < 0 || skip(&r, klen - keep) < 0)
            return -1;
        key[keep] = '\0';
        int long_key = klen >= sizeof key;
        uint64_t type;
        if (get_uint(&r, 4, &type) < 0)
            return -1;
        if (type >= T_COUNT)
            return fail(&r, "key %s has unknown value type %llu", key, (unsigned long long)type);
        size_t pl;
        uint64_t num;
        int ok;
        if (!long_key && strcmp(key, "general.architecture") == 0 && type == T_STRING) {
            if (get_string(&r, out->architecture, sizeof out->architecture, 4096,
                           "general.architecture") < 0)
                return -1;
        } else if (!long_key && strcmp(key, "general.name") == 0 && type == T_STRING) {
            if (get_string(&r, out->name, sizeof out->name, 1 << 20, "general.name") < 0)
                return -1;
        } else if (!long_key && strcmp(key, "general.file_type") == 0) {
            if (get_count(&r, (uint32_t)type, key, &num, &ok) < 0)
                return -1;
            if (ok)
                out->file_type = num > INT64_MAX ? -1 : (int64_t)num;
        } else if (!long_key && ends_with(key, keep, ".block_count", &pl)) {
            if (get_count(&r, (uint32_t)type, key, &num, &ok) < 0)
                return -1;
            if (ok)
                cand_add(&blocks, key, pl, num);
        } else if (!long_key && ends_with(key, keep, ".context_length", &pl)) {
            if (get_count(&r, (uint32_t)type, key, &num, &ok) < 0)
                return -1;
            if (ok)
                cand_add(&ctx, key, pl, num);
        } else if (!long_key && ends_with(key, keep, ".embedding_length", &pl)) {
            if (get_count(&r, (uint32_t)type, key, &num, &ok) < 0)
                return -1;
            if (ok)
                cand_add(&emb, key, pl, num);
        } else if (skip_value(&r, (uint32_t)type, 0) < 0) {
            return -1;
        }
    }
    if (!out->architecture[0])
        return fail(&r, "GGUF header has no general.architecture");
    out->block_count = cand_find(&blocks, out->architecture);
    out->context_length = cand_find(&ctx, out->architecture);
    out->embedding_length = cand_find(&emb, out->architecture);
    if (out->block_count == 0)
        return fail(&r, "GGUF header has no %s.block_count", out->architecture);
    return 0;
}

int sol_gguf_read_file(const char *path, struct sol_gguf_info *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open model file: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    int rc = sol_gguf_read_fd(fd, (uint64_t)st.st_size, path, out, err, errlen);
    close(fd);
    return rc;
}

const char *sol_gguf_file_type_name(int64_t t)
{
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",    [7] = "Q8_0",
        [8] = "Q5_0",    [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",   [32] = "BF16",
    };
    if (t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) && names[t])
        return names[t];
    return "unknown";
}
