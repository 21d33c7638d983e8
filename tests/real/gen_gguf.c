/*
 * gen_gguf.c - writes a small random-weight llama-architecture GGUF that the
 * real llama-server loads and serves (the real-llama test tier, and the
 * sharded path's benchmarks). A test tool, not part of the product.
 *
 *   sollol-gen-gguf OUT.gguf VOCAB.gguf [--layers N] [--embd N] [--ff N]
 *                   [--heads N] [--ctx N] [--name S] [--seed N]
 *
 * VOCAB.gguf is llama.cpp's models/ggml-vocab-llama-spm.gguf: its
 * tokenizer.* keys are copied verbatim. What makes the output usable
 * (../shared/llama.cpp/README.md):
 *   - weights F16, norms F32, random but bounded, so activations stay finite;
 *   - output.weight rows are non-zero only for NORMAL tokens whose text is
 *     printable ASCII (or SentencePiece's U+2581 space): llama-server ends a
 *     stream with an error when the model emits invalid UTF-8, and with
 *     zero rows everywhere else those tokens always win the top-k;
 *   - the end-of-sequence token is never chosen, so a request runs to its
 *     num_predict (tests always set one);
 *   - a ChatML chat template, which llama.cpp recognises with or without
 *     its Jinja engine.
 * Deterministic for a given seed. Exit status 0, or 1 with a message.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32u

static void die(const char *what)
{
    fprintf(stderr, "sollol-gen-gguf: %s%s%s\n", what, errno ? ": " : "",
            errno ? strerror(errno) : "");
    exit(1);
}

/* ---- reading the vocabulary file (bounded by its size) ------------------- */

struct rd {
    const unsigned char *p;
    size_t len, off;
};

static const unsigned char *take(struct rd *r, size_t n)
{
    if (n > r->len - r->off) {
        errno = 0;
        die("vocabulary file is truncated or not a GGUF");
    }
    const unsigned char *at = r->p + r->off;
    r->off += n;
    return at;
}

static uint64_t u64(struct rd *r)
{
    uint64_t v;
    memcpy(&v, take(r, 8), 8);
    return v;
}

static uint32_t u32(struct rd *r)
{
    uint32_t v;
    memcpy(&v, take(r, 4), 4);
    return v;
}

static size_t scalar_size(uint32_t t)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz / sizeof sz[0] ? sz[t] : 0;
}

static void skip_value(struct rd *r, uint32_t t)
{
    if (t == 8) {
        take(r, u64(r));
    } else if (t == 9) {
        uint32_t et = u32(r);
        uint64_t n = u64(r);
        for (uint64_t i = 0; i < n; i++)
            skip_value(r, et);
    } else if (scalar_size(t)) {
        take(r, scalar_size(t));
    } else {
        errno = 0;
        die("vocabulary file has an unknown value type");
    }
}

/* ---- output -------------------------------------------------------------- */

static FILE *out;
static uint64_t written;

static void put(const void *p, size_t n)
{
    if (fwrite(p, 1, n, out) != n)
        die("write failed");
    written += n;
}

static void put_u32(uint32_t v)
{
    put(&v, 4);
}

static void put_u64(uint64_t v)
{
    put(&v, 8);
}

static void put_str(const char *s)
{
    put_u64(strlen(s));
    put(s, strlen(s));
}

static void kv_str(const char *k, const char *v)
{
    put_str(k);
    put_u32(8);
    put_str(v);
}

static void kv_u32(const char *k, uint32_t v)
{
    put_str(k);
    put_u32(4);
    put_u32(v);
}

static void kv_f32(const char *k, float v)
{
    put_str(k);
    put_u32(6);
    put(&v, 4);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float uniform(float scale)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    uint64_t x = rng * 2685821657736338717ull;
    return scale * (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static uint16_t half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (exp <= 0)
        return (uint16_t)sign; /* tiny: zero */
    if (exp >= 31)
        return (uint16_t)(sign | 0x7bffu); /* clamp to the largest finite */
    return (uint16_t)(sign | ((uint32_t)exp << 10) | (mant >> 13));
}

struct tensor {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type; /* 0 F32, 1 F16 */
    float scale;   /* uniform(-scale, scale); 1 with type F32 = all ones */
    int output;    /* output.weight: rows of allowed tokens only */
    uint64_t offset;
};

static uint64_t tensor_bytes(const struct tensor *t)
{
    uint64_t n = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1);
    return n * (t->type ? 2 : 4);
}

static int allowed_text(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n;) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            i++;
        } else if (i + 2 < n && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
            i += 3; /* U+2581, SentencePiece's space */
        } else {
            return 0;
        }
    }
    return 1;
}

static long arg_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        errno = 0;
        fprintf(stderr, "sollol-gen-gguf: '%s' is not a number in %ld..%ld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sollol-gen-gguf OUT.gguf VOCAB.gguf [--layers N] [--embd N] "
                        "[--ff N] [--heads N] [--ctx N] [--name S] [--seed N]\n");
        return 2;
    }
    long layers = 8, embd = 512, ff = 1536, heads = 8, ctx = 4096;
    const char *name = "sollol-test-llama";
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--layers"))
            layers = arg_num(v, 1, 256);
        else if (!strcmp(k, "--embd"))
            embd = arg_num(v, 32, 16384);
        else if (!strcmp(k, "--ff"))
            ff = arg_num(v, 32, 65536);
        else if (!strcmp(k, "--heads"))
            heads = arg_num(v, 1, 256);
        else if (!strcmp(k, "--ctx"))
            ctx = arg_num(v, 64, 1 << 20);
        else if (!strcmp(k, "--name"))
            name = v;
        else if (!strcmp(k, "--seed"))
            rng ^= (uint64_t)arg_num(v, 0, 1L << 40) * 0x100000001B3ull;
        else {
            fprintf(stderr, "sollol-gen-gguf: unknown option %s\n", k);
            return 2;
        }
    }
    if (embd % heads || (embd / heads) % 2) {
        fprintf(stderr, "sollol-gen-gguf: --embd must be a multiple of 2 * --heads\n");
        return 2;
    }

    /* The vocabulary: its tokenizer.* keys, and which tokens may be emitted. */
    FILE *vf = fopen(argv[2], "rb");
    if (!vf)
        die(argv[2]);
    static unsigned char vbuf[64u << 20];
    size_t vlen = fread(vbuf, 1, sizeof vbuf, vf);
    fclose(vf);
    struct rd r = {vbuf, vlen, 0};
    if (memcmp(take(&r, 4), "GGUF", 4) != 0 || u32(&r) != 3) {
        errno = 0;
        die("vocabulary file is not a GGUF v3");
    }
    u64(&r); /* tensor count */
    uint64_t nkv = u64(&r);
    struct span {
        size_t off, len;
    } tok_kv[32];
    unsigned n_tok_kv = 0;
    size_t tokens_at = 0, types_at = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        size_t start = r.off;
        uint64_t klen = u64(&r);
        const char *key = (const char *)take(&r, klen);
        uint32_t t = u32(&r);
        size_t value_at = r.off;
        skip_value(&r, t);
        if (klen > 10 && memcmp(key, "tokenizer.", 10) == 0 && n_tok_kv < 32) {
            tok_kv[n_tok_kv].off = start;
            tok_kv[n_tok_kv++].len = r.off - start;
            if (klen == 21 && memcmp(key, "tokenizer.ggml.tokens", 21) == 0 && t == 9)
                tokens_at = value_at;
            if (klen == 25 && memcmp(key, "tokenizer.ggml.token_type", 25) == 0 && t == 9)
                types_at = value_at;
        }
    }
    if (!tokens_at || !types_at) {
        errno = 0;
        die("vocabulary file has no tokenizer.ggml.tokens / token_type");
    }
    struct rd tr = {vbuf, vlen, tokens_at}, ty = {vbuf, vlen, types_at};
    u32(&tr);
    uint64_t n_vocab = u64(&tr);
    if (u32(&ty) != 5 || u64(&ty) != n_vocab || n_vocab == 0 || n_vocab > 1000000) {
        errno = 0;
        die("vocabulary file: token_type does not match tokens");
    }
    unsigned char *allowed = calloc(n_vocab, 1);
    if (!allowed)
        die("out of memory");
    uint64_t n_allowed = 0;
    for (uint64_t i = 0; i < n_vocab; i++) {
        uint64_t l = u64(&tr);
        const unsigned char *s = take(&tr, l);
        int32_t type = (int32_t)u32(&ty);
        allowed[i] = type == 1 && allowed_text(s, l);
        n_allowed += allowed[i];
    }

    /* Tensors, in the order llama.cpp names them. */
    size_t n_t = 3 + 9 * (size_t)layers;
    struct tensor *ts = calloc(n_t, sizeof *ts);
    if (!ts)
        die("out of memory");
    size_t k = 0;
    float s_embd = sqrtf(3.0f / (float)embd), s_ff = sqrtf(3.0f / (float)ff);
#define T2(nm, a, b, sc)                                                                           \
    do {                                                                                           \
        snprintf(ts[k].name, sizeof ts[k].name, "%s", nm);                                         \
        ts[k].n_dims = 2;                                                                          \
        ts[k].ne[0] = (uint64_t)(a);                                                               \
        ts[k].ne[1] = (uint64_t)(b);                                                               \
        ts[k].type = 1;                                                                            \
        ts[k].scale = sc;                                                                          \
        k++;                                                                                       \
    } while (0)
#define T1(nm, a)                                                                                  \
    do {                                                                                           \
        snprintf(ts[k].name, sizeof ts[k].name, "%s", nm);                                         \
        ts[k].n_dims = 1;                                                                          \
        ts[k].ne[0] = (uint64_t)(a);                                                               \
        ts[k].type = 0;                                                                            \
        ts[k].scale = 1;                                                                           \
        k++;                                                                                       \
    } while (0)
    T2("token_embd.weight", embd, n_vocab, 1.0f);
    T1("output_norm.weight", embd);
    T2("output.weight", embd, n_vocab, 1.0f);
    ts[k - 1].output = 1;
    for (long l = 0; l < layers; l++) {
        char nm[64];
#define BLK(suffix) (snprintf(nm, sizeof nm, "blk.%ld." suffix, l), nm)
        T1(BLK("attn_norm.weight"), embd);
        T2(BLK("attn_q.weight"), embd, embd, s_embd);
        T2(BLK("attn_k.weight"), embd, embd, s_embd);
        T2(BLK("attn_v.weight"), embd, embd, s_embd);
        T2(BLK("attn_output.weight"), embd, embd, s_embd);
        T1(BLK("ffn_norm.weight"), embd);
        T2(BLK("ffn_gate.weight"), embd, ff, s_embd);
        T2(BLK("ffn_up.weight"), embd, ff, s_embd);
        T2(BLK("ffn_down.weight"), ff, embd, s_ff);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n_t; i++) {
        ts[i].offset = off;
        off += (tensor_bytes(&ts[i]) + ALIGN - 1) / ALIGN * ALIGN;
    }

    out = fopen(argv[1], "wb");
    if (!out)
        die(argv[1]);
    static char obuf[1 << 20];
    setvbuf(out, obuf, _IOFBF, sizeof obuf);
    put("GGUF", 4);
    put_u32(3);
    put_u64(n_t);
    put_u64(12 + n_tok_kv + 1);
    kv_str("general.architecture", "llama");
    kv_str("general.name", name);
    kv_u32("general.file_type", 1); /* mostly F16 */
    kv_u32("llama.block_count", (uint32_t)layers);
    kv_u32("llama.context_length", (uint32_t)ctx);
    kv_u32("llama.embedding_length", (uint32_t)embd);
    kv_u32("llama.feed_forward_length", (uint32_t)ff);
    kv_u32("llama.attention.head_count", (uint32_t)heads);
    kv_u32("llama.attention.head_count_kv", (uint32_t)heads);
    kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_u32("llama.rope.dimension_count", (uint32_t)(embd / heads));
    kv_u32("llama.vocab_size", (uint32_t)n_vocab);
    for (unsigned i = 0; i < n_tok_kv; i++)
        put(vbuf + tok_kv[i].off, tok_kv[i].len);
    kv_str("tokenizer.chat_template",
           "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
           "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
           "%}{{ '<|im_start|>assistant\\n' }}{% endif %}");
    for (size_t i = 0; i < n_t; i++) {
        put_str(ts[i].name);
        put_u32(ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims; d++)
            put_u64(ts[i].ne[d]);
        put_u32(ts[i].type);
        put_u64(ts[i].offset);
    }
    static const char zeros[ALIGN];
    put(zeros, (ALIGN - written % ALIGN) % ALIGN);
    uint64_t data_start = written;
    uint16_t *row = malloc((size_t)(embd > ff ? embd : ff) * 2);
    float *frow = malloc((size_t)embd * 4);
    if (!row || !frow)
        die("out of memory");
    for (size_t i = 0; i < n_t; i++) {
        const struct tensor *t = &ts[i];
        put(zeros, (size_t)(data_start + t->offset - written));
        if (t->type == 0) {
            for (uint64_t j = 0; j < t->ne[0]; j++)
                frow[j] = 1.0f;
            put(frow, t->ne[0] * 4);
            continue;
        }
        for (uint64_t rI = 0; rI < t->ne[1]; rI++) {
            int zero = t->output && !allowed[rI];
            for (uint64_t j = 0; j < t->ne[0]; j++)
                row[j] = zero ? 0 : half(uniform(t->scale));
            put(row, t->ne[0] * 2);
        }
    }
    put(zeros, (ALIGN - written % ALIGN) % ALIGN);
    if (fclose(out) != 0)
        die("write failed");
    fprintf(stderr,
            "sollol-gen-gguf: %s: %ld layers, n_embd %ld, n_ff %ld, %ld heads, %llu tokens "
            "(%llu may be emitted), %llu MiB\n",
            argv[1], layers, embd, ff, heads, (unsigned long long)n_vocab,
            (unsigned long long)n_allowed, (unsigned long long)(written >> 20));
    free(row);
    free(frow);
    free(ts);
    free(allowed);
    return 0;
}
