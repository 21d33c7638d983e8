/*
 * affinity.c - prefix keys, the affinity memory and rendezvous hashing
 * (rules and contracts in affinity.h).
 *
 * Keys are XXH64 (the reference algorithm, seed 0) over a canonical byte
 * stream. The stream is fed incrementally, so a snapshot of the running
 * state taken between two messages is exactly the hash of the prefix fed
 * so far: that is how one pass yields the lookup, anchor and remember keys.
 * The stream encodes each value followed by a trailer (its length or count
 * and a type byte), which makes the encoding unambiguous when read from
 * the end, so distinct canonical forms give distinct streams.
 */
#include "base/affinity.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char uchar;

#define NIL UINT32_MAX

/* ------------------------------------------------------------------------ */
/* XXH64, streaming                                                          */
/* ------------------------------------------------------------------------ */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

struct hstream {
    uint64_t v[4];
    uint64_t total;
    uchar buf[32];
    unsigned nbuf;
};

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t rd64(const uchar *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t rd32(const uchar *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t xround(uint64_t acc, uint64_t in)
{
    acc += in * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static inline uint64_t xmerge(uint64_t acc, uint64_t v)
{
    acc ^= xround(0, v);
    return acc * P1 + P4;
}

static void hs_init(struct hstream *h)
{
    h->v[0] = P1 + P2;
    h->v[1] = P2;
    h->v[2] = 0;
    h->v[3] = (uint64_t)0 - P1;
    h->total = 0;
    h->nbuf = 0;
}

static void hs_update(struct hstream *h, const void *data, size_t n)
{
    const uchar *p = data;
    h->total += n;
    if (h->nbuf + n < 32) {
        if (n) {
            memcpy(h->buf + h->nbuf, p, n);
            h->nbuf += (unsigned)n;
        }
        return;
    }
    uint64_t v0 = h->v[0], v1 = h->v[1], v2 = h->v[2], v3 = h->v[3];
    if (h->nbuf) {
        size_t fill = 32 - h->nbuf;
        memcpy(h->buf + h->nbuf, p, fill);
        v0 = xround(v0, rd64(h->buf));
        v1 = xround(v1, rd64(h->buf + 8));
        v2 = xround(v2, rd64(h->buf + 16));
        v3 = xround(v3, rd64(h->buf + 24));
        p += fill;
        n -= fill;
        h->nbuf = 0;
    }
    while (n >= 32) {
        v0 = xround(v0, rd64(p));
        v1 = xround(v1, rd64(p + 8));
        v2 = xround(v2, rd64(p + 16));
        v3 = xround(v3, rd64(p + 24));
        p += 32;
        n -= 32;
    }
    h->v[0] = v0;
    h->v[1] = v1;
    h->v[2] = v2;
    h->v[3] = v3;
    if (n) {
        memcpy(h->buf, p, n);
        h->nbuf = (unsigned)n;
    }
}

/* The hash of everything fed so far; the stream can go on afterwards. */
static uint64_t hs_digest(const struct hstream *h)
{
    uint64_t acc;
    if (h->total >= 32) {
        acc = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) + rotl64(h->v[3], 18);
        acc = xmerge(acc, h->v[0]);
        acc = xmerge(acc, h->v[1]);
        acc = xmerge(acc, h->v[2]);
        acc = xmerge(acc, h->v[3]);
    } else {
        acc = h->v[2] + P5; /* v[2] is still the seed */
    }
    acc += h->total;
    const uchar *p = h->buf;
    size_t n = h->nbuf;
    while (n >= 8) {
        acc ^= xround(0, rd64(p));
        acc = rotl64(acc, 27) * P1 + P4;
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        acc ^= (uint64_t)rd32(p) * P1;
        acc = rotl64(acc, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    while (n--) {
        acc ^= (uint64_t)*p++ * P5;
        acc = rotl64(acc, 11) * P1;
    }
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}

static inline uint64_t nonzero(uint64_t k)
{
    return k ? k : 1;
}

static inline void put_byte(struct hstream *h, uchar c)
{
    hs_update(h, &c, 1);
}

static void put_u64(struct hstream *h, uint64_t x)
{
    uchar b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uchar)(x >> (8 * i));
    hs_update(h, b, 8);
}

/* A NUL-terminated tag, with its trailer. */
static void put_tag(struct hstream *h, const char *s)
{
    size_t n = strlen(s);
    hs_update(h, s, n);
    put_u64(h, n);
    put_byte(h, 'd');
}

/* The model name, ASCII letters folded as sol_model_key() folds them. */
static void put_model(struct hstream *h, const char *model)
{
    uchar tmp[64];
    size_t n = 0, total = 0;
    for (const uchar *p = (const uchar *)(model ? model : ""); *p; p++) {
        tmp[n++] = (*p >= 'A' && *p <= 'Z') ? (uchar)(*p + 32) : *p;
        if (n == sizeof tmp) {
            hs_update(h, tmp, n);
            total += n;
            n = 0;
        }
    }
    hs_update(h, tmp, n);
    put_u64(h, total + n);
    put_byte(h, 'm');
}

/* ------------------------------------------------------------------------ */
/* Canonical JSON values                                                     */
/* ------------------------------------------------------------------------ */

/* Decoded text is staged in a small buffer so that text with frequent
 * escapes reaches the hash in large pieces; long runs go to it directly. */
#define STAGE      512
#define DIRECT_RUN 128

struct stage {
    struct hstream *h;
    size_t n;
    uchar buf[STAGE];
};

static inline void stage_flush(struct stage *st)
{
    hs_update(st->h, st->buf, st->n);
    st->n = 0;
}

static inline void stage_put(struct stage *st, const uchar *p, size_t n)
{
    if (n >= DIRECT_RUN) {
        stage_flush(st);
        hs_update(st->h, p, n);
        return;
    }
    if (st->n + n > STAGE)
        stage_flush(st);
    if (n <= 16) { /* cheaper than a call for the short runs between escapes */
        for (size_t i = 0; i < n; i++)
            st->buf[st->n + i] = p[i];
    } else {
        memcpy(st->buf + st->n, p, n);
    }
    st->n += n;
}

/* The first backslash in [p, end), or NULL. Escapes come every few dozen
 * bytes in code and chat text, where a call to memchr per escape costs
 * more than the scan: the first 64 bytes are searched inline, eight at a
 * time, and only longer runs go to memchr. */
static inline const uchar *find_backslash(const uchar *p, const uchar *end)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const uint64_t pat = 0x5c5c5c5c5c5c5c5cull; /* '\\' */
    const uchar *inline_end = end - p > 64 ? p + 64 : end;
    while (inline_end - p >= 8) {
        uint64_t x = rd64(p) ^ pat;             /* byte i of x is p[i] on any host */
        uint64_t hit = (x - ones) & ~x & highs; /* exact for the lowest hit byte */
        if (hit)
            return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
    if (inline_end < end) /* p == inline_end: 64 is a multiple of 8 */
        return memchr(p, '\\', (size_t)(end - p));
    for (; p < end; p++)
        if (*p == '\\')
            return p;
    return NULL;
}

/* Feeds the decoded text of a string span, at most `limit` bytes of it;
 * returns the bytes fed. A malformed escape (impossible after validation)
 * is fed raw. */
static size_t feed_decoded(struct hstream *h, const struct sol_json_span *s, size_t limit)
{
    if (s->len < 2)
        return 0;
    const uchar *p = (const uchar *)s->p + 1, *end = (const uchar *)s->p + s->len - 1;
    struct stage st;
    st.h = h;
    st.n = 0;
    size_t n = 0;
    while (p < end && n < limit) {
        const uchar *bs = find_backslash(p, end);
        size_t run = (size_t)((bs ? bs : end) - p);
        if (run > limit - n)
            run = limit - n;
        stage_put(&st, p, run);
        n += run;
        p += run;
        if (!bs || n >= limit)
            break;
        uchar tmp[4];
        size_t w;
        int wlen = 0;
        int used = sol_json_decode_escape((const char *)p, (const char *)end, tmp, &wlen);
        if (used) {
            w = (size_t)wlen;
        } else {
            tmp[0] = *p;
            w = 1;
            used = 1;
        }
        if (w > limit - n)
            w = limit - n;
        if (st.n + sizeof tmp > STAGE)
            stage_flush(&st);
        for (size_t i = 0; i < w; i++)
            st.buf[st.n++] = tmp[i];
        n += w;
        p += used;
    }
    stage_flush(&st);
    return n;
}

static void put_raw(struct hstream *h, const struct sol_json_span *v)
{
    hs_update(h, v->p, v->len);
    put_u64(h, v->len);
    put_byte(h, 'r');
}

/* One value in canonical form (see affinity.h). Recursion is bounded by
 * SOL_AFFINITY_CANON_DEPTH; deeper containers are hashed as raw text. */
static void put_value(struct hstream *h, const struct sol_json_span *v, int depth)
{
    switch (v->type) {
    case SOL_JSON_NULL:
        put_byte(h, 'z');
        return;
    case SOL_JSON_FALSE:
        put_byte(h, 'f');
        return;
    case SOL_JSON_TRUE:
        put_byte(h, 't');
        return;
    case SOL_JSON_NUMBER:
        hs_update(h, v->p, v->len);
        put_u64(h, v->len);
        put_byte(h, 'n');
        return;
    case SOL_JSON_STRING:
        put_u64(h, feed_decoded(h, v, SIZE_MAX));
        put_byte(h, 's');
        return;
    case SOL_JSON_ARRAY: {
        if (depth >= SOL_AFFINITY_CANON_DEPTH) {
            put_raw(h, v);
            return;
        }
        struct sol_json_span e;
        size_t pos = 0;
        uint64_t count = 0;
        while (sol_json_array_next(v, &pos, &e)) {
            put_value(h, &e, depth + 1);
            count++;
        }
        put_u64(h, count);
        put_byte(h, 'a');
        return;
    }
    case SOL_JSON_OBJECT: {
        if (depth >= SOL_AFFINITY_CANON_DEPTH) {
            put_raw(h, v);
            return;
        }
        /* Member order must not matter: each member is hashed on its own and
         * the hashes are added, which commutes. */
        struct sol_json_span k, val;
        size_t pos = 0;
        uint64_t sum = 0, count = 0;
        while (sol_json_object_next(v, &pos, &k, &val)) {
            struct hstream m;
            hs_init(&m);
            put_u64(&m, feed_decoded(&m, &k, SIZE_MAX));
            put_byte(&m, 'k');
            put_value(&m, &val, depth + 1);
            sum += hs_digest(&m);
            count++;
        }
        put_u64(h, sum);
        put_u64(h, count);
        put_byte(h, 'o');
        return;
    }
    }
}

/* null, "", [] and {} count as absent. */
static int is_empty(const struct sol_json_span *v)
{
    struct sol_json_span k, e;
    size_t pos = 0;
    switch (v->type) {
    case SOL_JSON_NULL:
        return 1;
    case SOL_JSON_STRING:
        return v->len <= 2;
    case SOL_JSON_ARRAY:
        return !sol_json_array_next(v, &pos, &e);
    case SOL_JSON_OBJECT:
        return !sol_json_object_next(v, &pos, &k, &e);
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Chat keys                                                                 */
/* ------------------------------------------------------------------------ */

/* The message fields that shape the prompt, in the order they are hashed. */
static const char *const msg_fields[] = {
    "role", "content", "images", "tool_calls", "tool_call_id", "tool_name", "name",
};
static const unsigned char msg_field_len[] = {4, 7, 6, 10, 12, 9, 4};
#define N_FIELDS (sizeof msg_fields / sizeof msg_fields[0])

enum msg_role { ROLE_OTHER, ROLE_USER, ROLE_ASSISTANT };

/* Whether raw key k could equal `name` (n bytes) under Go's folding: a
 * key without escapes or non-ASCII bytes must have the same length. Most
 * keys are rejected here without sol_json_key_equals_fold(). */
static inline int key_may_equal(const struct sol_json_span *k, size_t n)
{
    if (k->len == n + 2)
        return 1;
    for (size_t i = 1; i + 1 < k->len; i++)
        if (k->p[i] == '\\' || (uchar)k->p[i] >= 0x80)
            return 1;
    return 0;
}

/* The prompt-shaping fields of one message, found in one walk. */
struct message {
    const struct sol_json_span *raw;
    struct sol_json_span f[N_FIELDS];
    unsigned char have[N_FIELDS];
};

/* Finds the fields of message m and tells its role. */
static enum msg_role read_message(const struct sol_json_span *m, struct message *msg)
{
    msg->raw = m;
    memset(msg->have, 0, sizeof msg->have);
    if (m->type != SOL_JSON_OBJECT)
        return ROLE_OTHER;
    struct sol_json_span k, v;
    size_t pos = 0;
    while (sol_json_object_next(m, &pos, &k, &v)) {
        for (unsigned i = 0; i < N_FIELDS; i++)
            if (key_may_equal(&k, msg_field_len[i]) &&
                sol_json_key_equals_fold(&k, msg_fields[i])) {
                msg->f[i] = v; /* the last duplicate wins, as in Go */
                msg->have[i] = 1;
                break;
            }
    }
    const struct sol_json_span *role = &msg->f[0];
    if (!msg->have[0] || role->type != SOL_JSON_STRING)
        return ROLE_OTHER;
    if (sol_json_key_equals(role, "assistant"))
        return ROLE_ASSISTANT;
    if (sol_json_key_equals(role, "user"))
        return ROLE_USER;
    return ROLE_OTHER;
}

/* Feeds a message read by read_message() in canonical form. */
static void put_message(struct hstream *h, const struct message *msg)
{
    if (msg->raw->type != SOL_JSON_OBJECT) {
        put_value(h, msg->raw, 1);
        put_byte(h, 'X');
        return;
    }
    for (unsigned i = 0; i < N_FIELDS; i++)
        if (msg->have[i] && !is_empty(&msg->f[i])) {
            put_value(h, &msg->f[i], 1);
            put_byte(h, (uchar)('0' + i));
        }
    put_byte(h, 'M');
}

int sol_affinity_keys_chat(const struct sol_json_span *messages, const char *model,
                           struct sol_affinity_keys *out)
{
    memset(out, 0, sizeof *out);
    if (!messages || !messages->p || messages->type != SOL_JSON_ARRAY)
        return 0;
    struct hstream h, before_assistant;
    hs_init(&h);
    put_tag(&h, "sollol-affinity-chat-v1");
    put_model(&h, model);
    struct sol_json_span m;
    struct message msg;
    size_t pos = 0, count = 0;
    int have_lookup = 0;
    uint64_t anchor = 0;
    while (sol_json_array_next(messages, &pos, &m)) {
        enum msg_role role = read_message(&m, &msg);
        if (role == ROLE_ASSISTANT) {
            /* The stream so far is the prefix before this assistant
             * message; the last such snapshot is the lookup key. */
            before_assistant = h;
            have_lookup = count > 0;
        }
        put_message(&h, &msg);
        count++;
        if (role == ROLE_USER && !anchor)
            anchor = nonzero(hs_digest(&h));
    }
    if (!count)
        return 0;
    out->remember = nonzero(hs_digest(&h));
    out->lookup = have_lookup ? nonzero(hs_digest(&before_assistant)) : 0;
    out->anchor = anchor ? anchor : out->remember;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Generate, context and session keys                                        */
/* ------------------------------------------------------------------------ */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

uint64_t sol_affinity_key_context(const struct sol_json_span *context, const char *model)
{
    if (!context || !context->p || context->type != SOL_JSON_ARRAY)
        return 0;
    struct hstream h;
    hs_init(&h);
    put_tag(&h, "sollol-affinity-context-v1");
    put_model(&h, model);
    struct sol_json_span e;
    size_t pos = 0;
    uint64_t count = 0;
    while (sol_json_array_next(context, &pos, &e)) {
        if (e.type == SOL_JSON_NUMBER) {
            hs_update(&h, e.p, e.len);
            put_byte(&h, ',');
        } else {
            put_value(&h, &e, 1);
        }
        count++;
    }
    if (!count)
        return 0;
    put_u64(&h, count);
    return nonzero(hs_digest(&h));
}

int sol_affinity_keys_generate(const char *body, size_t len, const char *model,
                               struct sol_affinity_keys *out)
{
    memset(out, 0, sizeof *out);
    if (!body)
        return 0;
    while (len && is_ws(*body)) {
        body++;
        len--;
    }
    while (len && is_ws(body[len - 1]))
        len--;
    struct sol_json_span obj = {body, len, SOL_JSON_OBJECT}, k, v;
    struct sol_json_span prompt = {0}, system = {0}, context = {0};
    size_t pos = 0;
    while (sol_json_object_next(&obj, &pos, &k, &v)) {
        if (sol_json_key_equals_fold(&k, "prompt"))
            prompt = v;
        else if (sol_json_key_equals_fold(&k, "system"))
            system = v;
        else if (sol_json_key_equals_fold(&k, "context"))
            context = v;
    }
    uint64_t key = sol_affinity_key_context(&context, model);
    if (key) {
        out->lookup = out->anchor = key;
        return 1;
    }
    int has_prompt = prompt.p && prompt.type == SOL_JSON_STRING && !is_empty(&prompt);
    int has_system = system.p && system.type == SOL_JSON_STRING && !is_empty(&system);
    if (!has_prompt && !has_system)
        return 0;
    struct hstream h;
    hs_init(&h);
    put_tag(&h, "sollol-affinity-generate-v1");
    put_model(&h, model);
    put_u64(&h, has_system ? feed_decoded(&h, &system, SIZE_MAX) : 0);
    put_byte(&h, 's');
    put_u64(&h, has_prompt ? feed_decoded(&h, &prompt, SOL_AFFINITY_PROMPT_PREFIX) : 0);
    put_byte(&h, 'p');
    out->lookup = out->remember = out->anchor = nonzero(hs_digest(&h));
    return 1;
}

int sol_affinity_keys_session(const char *id, size_t len, const char *model,
                              struct sol_affinity_keys *out)
{
    memset(out, 0, sizeof *out);
    if (!id)
        return 0;
    while (len && (*id == ' ' || *id == '\t')) {
        id++;
        len--;
    }
    while (len && (id[len - 1] == ' ' || id[len - 1] == '\t'))
        len--;
    if (!len)
        return 0;
    struct hstream h;
    hs_init(&h);
    put_tag(&h, "sollol-affinity-session-v1");
    put_model(&h, model);
    hs_update(&h, id, len);
    put_u64(&h, len);
    out->lookup = out->remember = out->anchor = nonzero(hs_digest(&h));
    return 1;
}

uint64_t sol_affinity_node_id(const char *identity)
{
    struct hstream h;
    hs_init(&h);
    put_tag(&h, "sollol-affinity-node-v1");
    size_t n = identity ? strlen(identity) : 0;
    hs_update(&h, identity ? identity : "", n);
    put_u64(&h, n);
    return nonzero(hs_digest(&h));
}

/* ------------------------------------------------------------------------ */
/* Rendezvous                                                                */
/* ------------------------------------------------------------------------ */

/* splitmix64's finaliser: a bijection with full avalanche. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline uint64_t hrw_score(uint64_t key, uint64_t id)
{
    return mix64(key ^ mix64(id ^ 0x6a09e667f3bcc909ull));
}

int sol_rendezvous_pick(uint64_t key, const uint64_t *node_ids, const unsigned char *eligible,
                        unsigned n)
{
    if (!node_ids)
        return -1;
    int best = -1;
    uint64_t best_score = 0;
    for (unsigned i = 0; i < n && i <= INT_MAX; i++) {
        if (eligible && !eligible[i])
            continue;
        uint64_t s = hrw_score(key, node_ids[i]);
        if (best < 0 || s > best_score) {
            best = (int)i;
            best_score = s;
        }
    }
    return best;
}

/* ------------------------------------------------------------------------ */
/* The memory                                                                */
/* ------------------------------------------------------------------------ */

struct sol_affinity_slot {
    uint64_t key;
    uint64_t expires_at_ms;
    uint32_t node;
    uint32_t chain;      /* next in the bucket's chain, or in the free list */
    uint32_t prev, next; /* LRU neighbours: prev = more recently used */
};

static inline uint32_t bucket_of(const struct sol_affinity *a, uint64_t key)
{
    return (uint32_t)(mix64(key ^ a->salt) & a->mask);
}

/* The link that points at key's slot, or at NIL where it would be. */
static uint32_t *find_link(struct sol_affinity *a, uint64_t key)
{
    uint32_t *link = &a->buckets[bucket_of(a, key)];
    while (*link != NIL && a->slots[*link].key != key)
        link = &a->slots[*link].chain;
    return link;
}

static void lru_unlink(struct sol_affinity *a, uint32_t i)
{
    struct sol_affinity_slot *s = &a->slots[i];
    if (s->prev != NIL)
        a->slots[s->prev].next = s->next;
    else
        a->lru_head = s->next;
    if (s->next != NIL)
        a->slots[s->next].prev = s->prev;
    else
        a->lru_tail = s->prev;
}

static void lru_push_front(struct sol_affinity *a, uint32_t i)
{
    struct sol_affinity_slot *s = &a->slots[i];
    s->prev = NIL;
    s->next = a->lru_head;
    if (a->lru_head != NIL)
        a->slots[a->lru_head].prev = i;
    else
        a->lru_tail = i;
    a->lru_head = i;
}

/* Unlinks slot i (whose chain link is *link) and frees it. */
static void remove_slot(struct sol_affinity *a, uint32_t *link, uint32_t i)
{
    *link = a->slots[i].chain;
    lru_unlink(a, i);
    a->slots[i].chain = a->free_head;
    a->free_head = i;
    a->count--;
}

static void reset(struct sol_affinity *a)
{
    for (uint32_t b = 0; b <= a->mask; b++)
        a->buckets[b] = NIL;
    for (uint32_t i = 0; i < a->capacity; i++)
        a->slots[i].chain = i + 1 < a->capacity ? i + 1 : NIL;
    a->free_head = 0;
    a->lru_head = a->lru_tail = NIL;
    a->count = 0;
}

int sol_affinity_init(struct sol_affinity *a, unsigned capacity)
{
    memset(a, 0, sizeof *a);
    if (capacity == 0)
        capacity = SOL_AFFINITY_DEFAULT_CAPACITY;
    if (capacity > SOL_AFFINITY_MAX_CAPACITY)
        return -1;
    uint32_t nb = 1;
    while (nb < capacity)
        nb <<= 1;
    a->slots = calloc(capacity, sizeof *a->slots);
    a->buckets = malloc((size_t)nb * sizeof *a->buckets);
    if (!a->slots || !a->buckets) {
        free(a->slots);
        free(a->buckets);
        memset(a, 0, sizeof *a);
        return -1;
    }
    a->capacity = capacity;
    a->mask = nb - 1;
    /* Bucket placement need not be stable, only hard to aim at: keys are
     * public functions of the request, so mix in the heap address. */
    a->salt = mix64((uint64_t)(uintptr_t)a->slots ^ 0x243f6a8885a308d3ull);
    a->st.capacity = capacity;
    reset(a);
    return 0;
}

void sol_affinity_free(struct sol_affinity *a)
{
    free(a->slots);
    free(a->buckets);
    memset(a, 0, sizeof *a);
}

int sol_affinity_lookup(struct sol_affinity *a, uint64_t key, uint64_t now_ms)
{
    if (!a->slots || key == 0)
        return -1;
    uint32_t *link = find_link(a, key);
    uint32_t i = *link;
    if (i == NIL) {
        a->st.misses++;
        return -1;
    }
    if (now_ms >= a->slots[i].expires_at_ms) {
        remove_slot(a, link, i);
        a->st.expired++;
        a->st.misses++;
        return -1;
    }
    if (a->lru_head != i) {
        lru_unlink(a, i);
        lru_push_front(a, i);
    }
    a->st.hits++;
    return (int)a->slots[i].node;
}

void sol_affinity_remember(struct sol_affinity *a, uint64_t key, unsigned node_index,
                           uint64_t expires_at_ms)
{
    if (!a->slots || key == 0 || node_index > INT32_MAX)
        return;
    uint32_t *link = find_link(a, key);
    uint32_t i = *link;
    if (i != NIL) {
        a->slots[i].node = node_index;
        a->slots[i].expires_at_ms = expires_at_ms;
        if (a->lru_head != i) {
            lru_unlink(a, i);
            lru_push_front(a, i);
        }
        a->st.updates++;
        return;
    }
    if (a->count == a->capacity) {
        uint32_t victim = a->lru_tail;
        remove_slot(a, find_link(a, a->slots[victim].key), victim);
        a->st.evictions++;
        link = find_link(a, key); /* the chain may have changed */
    }
    i = a->free_head;
    struct sol_affinity_slot *s = &a->slots[i];
    a->free_head = s->chain;
    s->key = key;
    s->node = node_index;
    s->expires_at_ms = expires_at_ms;
    s->chain = NIL;
    *link = i; /* at the end of its chain: link points at the NIL there */
    lru_push_front(a, i);
    a->count++;
    a->st.inserts++;
}

uint64_t sol_affinity_expiry(uint64_t now_ms, long long keep_alive_ms)
{
    if (keep_alive_ms < 0)
        return UINT64_MAX;
    uint64_t ka = (uint64_t)keep_alive_ms;
    return now_ms > UINT64_MAX - ka ? UINT64_MAX : now_ms + ka;
}

/* Drops the entries for which drop(slot) holds; returns how many. */
static unsigned drop_where(struct sol_affinity *a,
                           int (*drop)(const struct sol_affinity_slot *, uint64_t), uint64_t arg)
{
    unsigned n = 0;
    if (!a->slots)
        return 0;
    for (uint32_t i = a->lru_head; i != NIL;) {
        uint32_t next = a->slots[i].next;
        if (drop(&a->slots[i], arg)) {
            remove_slot(a, find_link(a, a->slots[i].key), i);
            n++;
        }
        i = next;
    }
    return n;
}

static int of_node(const struct sol_affinity_slot *s, uint64_t node)
{
    return s->node == node;
}

static int expired_at(const struct sol_affinity_slot *s, uint64_t now_ms)
{
    return now_ms >= s->expires_at_ms;
}

unsigned sol_affinity_forget_node(struct sol_affinity *a, unsigned node_index)
{
    unsigned n = drop_where(a, of_node, node_index);
    a->st.forgotten += n;
    return n;
}

unsigned sol_affinity_sweep(struct sol_affinity *a, uint64_t now_ms)
{
    unsigned n = drop_where(a, expired_at, now_ms);
    a->st.expired += n;
    return n;
}

void sol_affinity_clear(struct sol_affinity *a)
{
    if (!a->slots)
        return;
    a->st.forgotten += a->count;
    reset(a);
}

void sol_affinity_get_stats(const struct sol_affinity *a, struct sol_affinity_stats *out)
{
    *out = a->st;
    out->entries = a->count;
}

int sol_affinity_pick(struct sol_affinity *a, const struct sol_affinity_keys *k,
                      const uint64_t *node_ids, const unsigned char *eligible, unsigned n,
                      uint64_t now_ms, enum sol_affinity_source *src)
{
    enum sol_affinity_source from = SOL_AFFINITY_NONE;
    int node = -1;
    if (a && k && k->lookup) {
        int r = sol_affinity_lookup(a, k->lookup, now_ms);
        if (r >= 0 && (unsigned)r < n && (!eligible || eligible[r])) {
            node = r;
            from = SOL_AFFINITY_REMEMBERED;
        }
    }
    if (node < 0 && k && k->anchor) {
        node = sol_rendezvous_pick(k->anchor, node_ids, eligible, n);
        if (node >= 0)
            from = SOL_AFFINITY_RENDEZVOUS;
    }
    if (src)
        *src = from;
    return node;
}
