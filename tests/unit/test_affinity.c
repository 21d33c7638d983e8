/*
 * Unit test of prefix affinity: the two-key rule on scripted 5-turn chats
 * (Ollama and OpenAI shapes, tool loops, re-serialised bodies), the
 * canonical form (escapes, whitespace, member order, empties, duplicates),
 * generate keys (context, prompt prefix at its exact boundary), session
 * keys, the LRU memory (capacity, eviction order, expiry boundaries,
 * forget_node, sweep, a randomised comparison with a brute-force model),
 * rendezvous hashing (removal moves exactly the removed node's keys,
 * addition about 1/6, uniform shares, order independence, determinism) and
 * sol_affinity_pick() across two daemons that share nothing.
 */
#include "base/affinity.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng = 0x1234567;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A growable text buffer, enough for the test bodies. */
struct sb {
    char *p;
    size_t len, cap;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            abort();
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_reset(struct sb *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

/* Decodes one UTF-8 sequence (test inputs are valid); returns its length. */
static int utf8_next(const unsigned char *s, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xE0) {
        *cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (s[0] < 0xF0) {
        *cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
          (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
}

/*
 * A JSON string literal for text. Style 0: as a compact serialiser writes
 * it (raw UTF-8, minimal escapes). Style 1: as Python's ensure_ascii and
 * PHP would, and worse: every non-ASCII code point as \u escapes (pairs for
 * astral ones), '/' as "\/", every 'a' as "\u0061", newlines as \u000a.
 */
static void put_jstr(struct sb *b, const char *text, int style)
{
    sb_puts(b, "\"");
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        uint32_t cp;
        int n = utf8_next(s, &cp);
        char tmp[16];
        if (cp == '"' || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            sb_put(b, tmp, 2);
        } else if (cp == '\n') {
            sb_puts(b, style ? "\\u000a" : "\\n");
        } else if (cp < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            sb_puts(b, tmp);
        } else if (style && cp == '/') {
            sb_puts(b, "\\/");
        } else if (style && cp == 'a') {
            sb_puts(b, "\\u0061");
        } else if (style && cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04X\\u%04X", (unsigned)(0xD800 + (v >> 10)),
                     (unsigned)(0xDC00 + (v & 0x3FF)));
            sb_puts(b, tmp);
        } else if (style && cp >= 0x80) {
            snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            sb_puts(b, tmp);
        } else {
            sb_put(b, (const char *)s, (size_t)n);
        }
        s += n;
    }
    sb_puts(b, "\"");
}

/* Validates a body and returns its top-level object span (trimmed). */
static struct sol_json_span body_span(const char *body)
{
    char err[200];
    int rc = sol_json_scan_object(body, strlen(body), 256, NULL, NULL, err, sizeof err);
    CHECK(rc == SOL_JSON_OK, "body does not validate: %s: %.200s", err, body);
    const char *p = body;
    size_t n = strlen(body);
    while (n && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\t' || p[n - 1] == '\r'))
        n--;
    struct sol_json_span s = {p, n, SOL_JSON_OBJECT};
    return s;
}

/* Chat keys of a whole body, as the daemon computes them: validate, find
 * "messages", key it. */
static struct sol_affinity_keys chat_keys(const char *body, const char *model)
{
    struct sol_json_span obj = body_span(body), msgs = {0};
    struct sol_affinity_keys k;
    CHECK(sol_json_object_get(&obj, "messages", &msgs), "no messages in %.100s", body);
    sol_affinity_keys_chat(&msgs, model, &k);
    return k;
}

static struct sol_affinity_keys gen_keys(const char *body, const char *model)
{
    struct sol_affinity_keys k;
    body_span(body);
    sol_affinity_keys_generate(body, strlen(body), model, &k);
    return k;
}

static int keys_eq(const struct sol_affinity_keys *a, const struct sol_affinity_keys *b)
{
    return a->lookup == b->lookup && a->remember == b->remember && a->anchor == b->anchor;
}

/* ---- the scripted Ollama chat ----------------------------------------- */

static const char *const SYS = "You are terse. Answer in English / français.";
static const char *const USER[5] = {
    "What is a KV cache? Say \"briefly\".",
    "And why does it matter for a router/proxy?\nOne line.",
    "Café ☕ or tea 🍵?",
    "Tabs\tand back\\slashes.",
    "Thanks, that's all.",
};
static const char *const ASSIST[4] = {
    "Stored keys/values of past tokens.",
    "Reusing it skips prefill: 360 ms instead of 3550 ms.",
    "Café, always ☕.",
    "Noted: \\t and \\\\.",
};

/*
 * Turn `turn` (1..5) of the scripted chat as an /api/chat body. Style 0 is
 * compact; style 1 re-serialises everything differently: pretty-printed,
 * members reordered, escapes everywhere, "thinking" on assistant messages,
 * empty "images" on user messages, a stream flag, an unknown field.
 */
static void ollama_turn(struct sb *b, int turn, int style, const char *model)
{
    sb_reset(b);
    const char *sep = style ? ",\n    " : ",";
    sb_puts(b, style ? "{\n  \"stream\": false,\n  \"messages\": [\n    " : "{\"model\":");
    if (!style) {
        put_jstr(b, model, 0);
        sb_puts(b, ",\"messages\":[");
    }
    if (style) {
        sb_puts(b, "{ \"content\" : ");
        put_jstr(b, SYS, 1);
        sb_puts(b, " , \"role\" : \"system\" }");
    } else {
        sb_puts(b, "{\"role\":\"system\",\"content\":");
        put_jstr(b, SYS, 0);
        sb_puts(b, "}");
    }
    for (int t = 0; t < turn; t++) {
        sb_puts(b, sep);
        if (style) {
            sb_puts(b, "{\"images\": [], \"content\": ");
            put_jstr(b, USER[t], 1);
            sb_puts(b, ", \"role\": \"u\\u0073er\"}");
        } else {
            sb_puts(b, "{\"role\":\"user\",\"content\":");
            put_jstr(b, USER[t], 0);
            sb_puts(b, "}");
        }
        if (t + 1 < turn) {
            sb_puts(b, sep);
            if (style) {
                sb_puts(b, "{\"thinking\": \"hmm\", \"Content\":\t");
                put_jstr(b, ASSIST[t], 1);
                sb_puts(b, ",\"role\":\"assistant\"}");
            } else {
                sb_puts(b, "{\"role\":\"assistant\",\"content\":");
                put_jstr(b, ASSIST[t], 0);
                sb_puts(b, "}");
            }
        }
    }
    if (style) {
        sb_puts(b, "\n  ],\n  \"x-unknown\": {\"a\": [1, 2]},\n  \"model\": ");
        put_jstr(b, model, 1);
        sb_puts(b, "\n}\n");
    } else {
        sb_puts(b, "]}");
    }
}

static void test_chat_two_keys(void)
{
    struct sb b = {0};
    struct sol_affinity_keys k[6], k1[6], other[6];
    for (int t = 1; t <= 5; t++) {
        ollama_turn(&b, t, 0, "llama3.2:latest");
        k[t] = chat_keys(b.p, "llama3.2:latest");
        ollama_turn(&b, t, 1, "llama3.2:latest");
        k1[t] = chat_keys(b.p, "llama3.2:latest");
        other[t] = chat_keys(b.p, "qwen2.5:7b");
        CHECK(keys_eq(&k[t], &k1[t]),
              "turn %d: re-serialised body changes keys (%016llx/%016llx/%016llx vs "
              "%016llx/%016llx/%016llx)",
              t, (unsigned long long)k[t].lookup, (unsigned long long)k[t].remember,
              (unsigned long long)k[t].anchor, (unsigned long long)k1[t].lookup,
              (unsigned long long)k1[t].remember, (unsigned long long)k1[t].anchor);
        CHECK(k[t].remember != 0 && k[t].anchor != 0, "turn %d unkeyed", t);
        CHECK(k[t].lookup != k[t].remember, "turn %d: lookup == remember", t);
        CHECK(other[t].lookup != k[t].lookup || (t == 1 && other[t].lookup == 0),
              "turn %d: another model, same lookup", t);
        CHECK(other[t].remember != k[t].remember && other[t].anchor != k[t].anchor,
              "turn %d: another model, same keys", t);
    }
    CHECK(k[1].lookup == 0, "turn 1 has no prefix to look up: %016llx",
          (unsigned long long)k[1].lookup);
    for (int t = 1; t < 5; t++) {
        CHECK(k[t + 1].lookup == k[t].remember, "turn %d does not find turn %d", t + 1, t);
        CHECK(other[t + 1].lookup == other[t].remember, "qwen: turn %d does not find turn %d",
              t + 1, t);
        CHECK(k[t + 1].anchor == k[1].anchor, "anchor moved at turn %d", t + 1);
        for (int u = t + 1; u <= 5; u++)
            CHECK(k[t].remember != k[u].remember, "turns %d and %d remember alike", t, u);
    }
    /* The model name is folded as sol_model_key() folds it. */
    ollama_turn(&b, 3, 0, "llama3.2:latest");
    struct sol_affinity_keys up = chat_keys(b.p, "LLAMA3.2:Latest");
    CHECK(keys_eq(&up, &k[3]), "model case changes keys");
    free(b.p);
}

/* What must change a key, and what must not. */
static void test_chat_canonical(void)
{
    const char *base = "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                       "{\"role\":\"user\",\"content\":\"hello \\u00e9\"},"
                       "{\"role\":\"assistant\",\"content\":\"hi\"},"
                       "{\"role\":\"user\",\"content\":\"more\"}]}";
    struct sol_affinity_keys k0 = chat_keys(base, "m:latest");
    static const struct {
        const char *body;
        int same; /* 1: all keys equal to base's; 0: remember differs */
        const char *what;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello \xc3\xa9\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         1, "raw UTF-8 vs \\u escape"},
        {"{\"messages\":[{\"content\":\"S\",\"role\":\"system\",\"images\":null},"
         "{\"role\":\"user\",\"content\":\"hello \\u00E9\",\"tool_calls\":[]},"
         "{\"role\":\"assistant\",\"content\":\"hi\",\"thinking\":\"x\",\"extra\":{}},"
         "{\"ROLE\":\"user\",\"content\":\"\\u006dore\"}]}",
         1, "order, empties, ignored fields, key case, escapes"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"x\",\"content\":\"hello \\u00e9\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         1, "duplicate field: the last wins"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\",\"name\":\"\"},"
         "{\"role\":\"user\",\"content\":\"hello \\u00e9\",\"tool_name\":null},"
         "{\"role\":\"assistant\",\"content\":\"hi\",\"images\":[]},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         1, "empty optional fields"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello e\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         0, "content changed"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello \\u00e9\",\"images\":[\"aGk=\"]},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         0, "an image added"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello \\u00e9\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         0, "a role changed"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hello \\u00e9\"},"
         "{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         0, "messages swapped"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello \\u00e9\",\"name\":\"bob\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}]}",
         0, "a name added"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
         "{\"role\":\"user\",\"content\":\"hello \\u00e9\"},"
         "{\"role\":\"assistant\",\"content\":\"hi\"},"
         "{\"role\":\"user\",\"content\":\"more\"}],\"model\":\"other\"}",
         1, "the body's model field is not read (the caller passes it)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sol_affinity_keys k = chat_keys(cases[i].body, "m:latest");
        if (cases[i].same)
            CHECK(keys_eq(&k, &k0), "case %zu (%s): keys differ", i, cases[i].what);
        else
            CHECK(k.remember != k0.remember, "case %zu (%s): keys equal", i, cases[i].what);
    }

    /* Escapes decode as Go decodes them: a lone surrogate is U+FFFD, a pair
     * is one code point. */
    struct sol_affinity_keys a = chat_keys(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800x \\ud83d\\ude00\"}]}", "m");
    struct sol_affinity_keys c = chat_keys(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ufffdx \xf0\x9f\x98\x80\"}]}", "m");
    CHECK(keys_eq(&a, &c), "surrogates not decoded as Go does");

    /* Member order inside tool-call arguments does not matter; values do. */
    const char *tc1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},"
                      "{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"get\","
                      "\"arguments\":{\"city\":\"Paris\",\"unit\":\"C\",\"n\":[1,2]}}}]},"
                      "{\"role\":\"tool\",\"content\":\"20\"}]}";
    const char *tc2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},"
                      "{\"tool_calls\":[{\"function\":{\"arguments\":{\"n\":[1,2],\"unit\":\"C\","
                      "\"city\":\"Paris\"},\"name\":\"get\"}}],\"role\":\"assistant\",\"content\":"
                      "\"\"},{\"role\":\"tool\",\"content\":\"20\"}]}";
    const char *tc3 = "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},"
                      "{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"get\","
                      "\"arguments\":{\"city\":\"Paris\",\"unit\":\"C\",\"n\":[2,1]}}}]},"
                      "{\"role\":\"tool\",\"content\":\"20\"}]}";
    struct sol_affinity_keys t1 = chat_keys(tc1, "m"), t2 = chat_keys(tc2, "m"),
                             t3 = chat_keys(tc3, "m");
    CHECK(keys_eq(&t1, &t2), "argument order changes keys");
    CHECK(t1.remember != t3.remember, "array order inside arguments ignored");
    CHECK(t1.lookup == t3.lookup && t1.lookup != 0, "lookup stops before the tool call");

    /* Nesting past SOL_AFFINITY_CANON_DEPTH is hashed as raw text: still
     * deterministic and finite. */
    struct sb b = {0};
    sb_puts(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"d\",\"tool_calls\":");
    for (int i = 0; i < 40; i++)
        sb_puts(&b, "[{\"k\":");
    sb_puts(&b, "1");
    for (int i = 0; i < 40; i++)
        sb_puts(&b, "}]");
    sb_puts(&b, "}]}");
    struct sol_affinity_keys d1 = chat_keys(b.p, "m"), d2 = chat_keys(b.p, "m");
    CHECK(keys_eq(&d1, &d2) && d1.remember != 0, "deep nesting not deterministic");
    free(b.p);

    /* Degenerate inputs. */
    struct sol_affinity_keys z;
    CHECK(sol_affinity_keys_chat(NULL, "m", &z) == 0 && !z.lookup && !z.remember && !z.anchor,
          "NULL messages keyed");
    struct sol_affinity_keys e = chat_keys("{\"messages\":[]}", "m");
    CHECK(!e.lookup && !e.remember && !e.anchor, "empty messages keyed");
    struct sol_json_span s = {"\"x\"", 3, SOL_JSON_STRING};
    CHECK(sol_affinity_keys_chat(&s, "m", &z) == 0, "a string as messages keyed");
    /* An assistant message first: nothing precedes it, so no lookup. */
    e = chat_keys("{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"},"
                  "{\"role\":\"user\",\"content\":\"u\"}]}",
                  "m");
    CHECK(e.lookup == 0 && e.remember != 0, "lookup of an empty prefix");
    /* No user message: the anchor is the whole list. */
    e = chat_keys("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", "m");
    CHECK(e.anchor == e.remember && e.lookup == 0, "anchor without a user message");
    /* Not-object messages are hashed too, and count. */
    e = chat_keys("{\"messages\":[\"odd\",{\"role\":\"assistant\",\"content\":\"a\"},"
                  "{\"role\":\"user\",\"content\":\"u\"}]}",
                  "m");
    CHECK(e.lookup != 0, "a non-object message ignored");
}

/*
 * An OpenAI-shaped conversation with an agent loop: turn 2 adds only a
 * tool result (no user message), content comes as parts, the assistant's
 * tool call has content null, ids and a JSON-string arguments field.
 */
static void openai_turn(struct sb *b, int turn, int style)
{
    static const char *const user1[2] = {
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in Paris?\"}]}",
        "{ \"content\" : [ { \"text\" : \"Weather in P\\u0061ris?\", \"type\" : \"text\" } ] ,"
        " \"role\" : \"user\" }",
    };
    static const char *const call[2] = {
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"weather\","
        "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}",
        "{\"tool_calls\": [{\"function\": {\"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\","
        " \"name\": \"weather\"}, \"type\": \"function\", \"id\": \"call_1\"}],"
        " \"role\": \"assistant\", \"refusal\": null}",
    };
    static const char *const tool[2] = {
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C, sunny\"}",
        "{\"content\":\"18C, sunny\",\"tool_call_id\":\"call_1\",\"role\":\"tool\"}",
    };
    static const char *const rest[6] = {
        "{\"role\":\"assistant\",\"content\":\"18 degrees and sunny.\"}",
        "{\"role\":\"user\",\"content\":\"And tomorrow?\"}",
        "{\"role\":\"assistant\",\"content\":\"Rain.\"}",
        "{\"role\":\"user\",\"content\":\"Umbrella then.\"}",
        "{\"role\":\"assistant\",\"content\":\"Yes.\"}",
        "{\"role\":\"user\",\"content\":\"Bye\"}",
    };
    sb_reset(b);
    sb_puts(b,
            style ? "{\"stream\":true, \"messages\" : [\n" : "{\"model\":\"gpt\",\"messages\":[");
    sb_puts(b, style ? "{\"role\":\"developer\", \"content\":\"Be brief.\"},\n"
                     : "{\"role\":\"developer\",\"content\":\"Be brief.\"},");
    sb_puts(b, user1[style]);
    if (turn >= 2) {
        sb_puts(b, ",");
        sb_puts(b, call[style]);
        sb_puts(b, ",");
        sb_puts(b, tool[style]);
    }
    for (int t = 3; t <= turn; t++) {
        sb_puts(b, ",");
        sb_puts(b, rest[2 * (t - 3)]);
        sb_puts(b, style ? " ,\n " : ",");
        sb_puts(b, rest[2 * (t - 3) + 1]);
    }
    sb_puts(b, "]}");
}

static void test_chat_openai(void)
{
    struct sb b = {0};
    struct sol_affinity_keys k[6];
    for (int t = 1; t <= 5; t++) {
        openai_turn(&b, t, 0);
        k[t] = chat_keys(b.p, "gpt-oss:20b");
        openai_turn(&b, t, 1);
        struct sol_affinity_keys k1 = chat_keys(b.p, "gpt-oss:20b");
        struct sol_affinity_keys o = chat_keys(b.p, "gpt-oss:120b");
        CHECK(keys_eq(&k[t], &k1), "openai turn %d: re-serialised body changes keys", t);
        CHECK(o.remember != k1.remember && o.anchor != k1.anchor,
              "openai turn %d: another model, same keys", t);
    }
    CHECK(k[1].lookup == 0, "openai turn 1 looks up");
    for (int t = 1; t < 5; t++) {
        CHECK(k[t + 1].lookup == k[t].remember, "openai turn %d does not find turn %d", t + 1, t);
        CHECK(k[t + 1].anchor == k[1].anchor, "openai anchor moved at turn %d", t + 1);
    }
    free(b.p);
}

/* ---- generate, context, session --------------------------------------- */

static void test_generate(void)
{
    /* With context: lookup = anchor = H(model, numbers); remember = 0. */
    struct sol_affinity_keys c1 =
        gen_keys("{\"model\":\"m\",\"prompt\":\"next\",\"context\":[1,2,3,40]}", "m:latest");
    struct sol_affinity_keys c2 =
        gen_keys(" {\"context\" : [ 1 ,\n 2,3 , 40 ] ,\"prompt\":\"something else\"} ", "m:latest");
    struct sol_affinity_keys c3 =
        gen_keys("{\"prompt\":\"next\",\"context\":[1,2,3,41]}", "m:latest");
    struct sol_affinity_keys c4 =
        gen_keys("{\"prompt\":\"next\",\"context\":[1,2,3,40]}", "other:latest");
    struct sol_affinity_keys c5 =
        gen_keys("{\"prompt\":\"next\",\"context\":[1,2,3],\"Context\":[1,2,3,40]}", "m:latest");
    CHECK(c1.lookup != 0 && c1.anchor == c1.lookup && c1.remember == 0, "context keys shape");
    CHECK(keys_eq(&c1, &c2), "context whitespace or prompt matters");
    CHECK(c1.lookup != c3.lookup, "context change ignored");
    CHECK(c1.lookup != c4.lookup, "model ignored with context");
    CHECK(keys_eq(&c1, &c5), "context key: Go's last case-folded duplicate should win");

    /* The response's final context, keyed, is the next turn's lookup. */
    const char *done = "{\"done\":true,\"context\":[1, 2, 3, 40],\"eval_count\":3}";
    struct sol_json_span d = body_span(done), ctx;
    CHECK(sol_json_object_get(&d, "context", &ctx), "no context");
    CHECK(sol_affinity_key_context(&ctx, "m:latest") == c1.lookup,
          "response context key != next lookup");
    CHECK(sol_affinity_key_context(NULL, "m") == 0, "NULL context keyed");
    struct sol_json_span empty = {"[]", 2, SOL_JSON_ARRAY};
    CHECK(sol_affinity_key_context(&empty, "m") == 0, "empty context keyed");

    /* An empty context falls back to the prompt. */
    struct sol_affinity_keys p0 = gen_keys("{\"prompt\":\"hi\",\"context\":[]}", "m:latest");
    struct sol_affinity_keys p1 = gen_keys("{\"prompt\":\"hi\"}", "m:latest");
    CHECK(keys_eq(&p0, &p1) && p1.lookup == p1.remember && p1.anchor == p1.lookup && p1.lookup != 0,
          "prompt keys shape");
    CHECK(p1.lookup != c1.lookup, "domains not separated");

    /* Prompt prefix: the first 1024 decoded bytes, plus system. */
    struct sb a = {0}, b = {0};
    char big[2101];
    for (int i = 0; i < 2100; i++)
        big[i] = (char)('a' + i % 23);
    big[2100] = '\0';
    sb_puts(&a, "{\"system\":\"sys\",\"prompt\":\"");
    sb_put(&a, big, 1024);
    sb_puts(&a, "tail one\"}");
    sb_puts(&b, "{\"prompt\":\"");
    sb_put(&b, big, 1024);
    sb_puts(&b, "a different and longer tail\",\"system\":\"s\\u0079s\"}");
    struct sol_affinity_keys ga = gen_keys(a.p, "m"), gb = gen_keys(b.p, "m");
    CHECK(keys_eq(&ga, &gb), "prompts equal in their first 1 KiB key differently");
    /* A change at byte 1023 matters. */
    sb_reset(&b);
    sb_puts(&b, "{\"system\":\"sys\",\"prompt\":\"");
    sb_put(&b, big, 1023);
    sb_puts(&b, "#tail one\"}");
    gb = gen_keys(b.p, "m");
    CHECK(ga.lookup != gb.lookup, "byte 1023 ignored");
    /* System matters, and its absence differs from an empty prefix. */
    sb_reset(&b);
    sb_puts(&b, "{\"system\":\"SYS\",\"prompt\":\"");
    sb_put(&b, big, 1024);
    sb_puts(&b, "\"}");
    gb = gen_keys(b.p, "m");
    CHECK(ga.lookup != gb.lookup, "system ignored");
    struct sol_affinity_keys s1 = gen_keys("{\"system\":\"x\"}", "m"),
                             s2 = gen_keys("{\"prompt\":\"x\"}", "m");
    CHECK(s1.lookup && s2.lookup && s1.lookup != s2.lookup, "system and prompt confused");

    /* The cut is on decoded bytes, also inside an escape: 1023 'z' then
     * U+00E9 (C3 A9) vs U+00E8 (C3 A8) share their first 1024 bytes. */
    char zs[1024];
    memset(zs, 'z', 1023);
    zs[1023] = '\0';
    sb_reset(&a);
    sb_puts(&a, "{\"prompt\":\"");
    sb_puts(&a, zs);
    sb_puts(&a, "\\u00e9\"}");
    sb_reset(&b);
    sb_puts(&b, "{\"prompt\":\"");
    sb_puts(&b, zs);
    sb_puts(&b, "\xc3\xa8 and more\"}");
    ga = gen_keys(a.p, "m");
    gb = gen_keys(b.p, "m");
    CHECK(keys_eq(&ga, &gb), "cut inside an escape");
    sb_reset(&b);
    sb_puts(&b, "{\"prompt\":\"");
    sb_puts(&b, zs);
    sb_puts(&b, "\xc4\xa9\"}");
    gb = gen_keys(b.p, "m");
    CHECK(ga.lookup != gb.lookup, "byte 1024 (first of the sequence) ignored");

    /* Escapes in a short prompt; model; nothing to key. */
    ga = gen_keys("{\"prompt\":\"caf\\u00e9 \\/ \\\"q\\\"\"}", "m");
    gb = gen_keys("{\"prompt\":\"caf\xc3\xa9 / \\\"q\\\"\"}", "m");
    CHECK(keys_eq(&ga, &gb), "escapes in the prompt matter");
    gb = gen_keys("{\"prompt\":\"caf\xc3\xa9 / \\\"q\\\"\"}", "n");
    CHECK(ga.lookup != gb.lookup, "model ignored in generate");
    struct sol_affinity_keys z = gen_keys("{\"prompt\":\"\",\"keep_alive\":0}", "m");
    CHECK(!z.lookup && !z.remember && !z.anchor, "an unload request keyed");
    z = gen_keys("{\"prompt\":[1,2]}", "m");
    CHECK(!z.lookup, "a non-string prompt keyed");
    CHECK(sol_affinity_keys_generate(NULL, 0, "m", &z) == 0, "NULL body keyed");
    free(a.p);
    free(b.p);
}

static void test_session(void)
{
    struct sol_affinity_keys a, b, c, d;
    CHECK(sol_affinity_keys_session("abc-123", 7, "m:latest", &a) == 1, "session not keyed");
    CHECK(a.lookup && a.lookup == a.remember && a.anchor == a.lookup, "session keys shape");
    sol_affinity_keys_session(" \tabc-123 ", 10, "M:LATEST", &b);
    CHECK(keys_eq(&a, &b), "session: spaces or model case matter");
    sol_affinity_keys_session("abc-123", 7, "n:latest", &c);
    CHECK(c.lookup != a.lookup, "session: model ignored");
    sol_affinity_keys_session("abc-124", 7, "m:latest", &d);
    CHECK(d.lookup != a.lookup, "session: id ignored");
    CHECK(sol_affinity_keys_session(" \t ", 3, "m", &d) == 0 && !d.lookup && !d.anchor,
          "blank session keyed");
    CHECK(sol_affinity_keys_session(NULL, 0, "m", &d) == 0, "NULL session keyed");
    struct sol_affinity_keys g = gen_keys("{\"prompt\":\"abc-123\"}", "m:latest");
    CHECK(g.lookup != a.lookup, "session and prompt domains not separated");
}

/* ---- the memory ------------------------------------------------------- */

static void test_lru(void)
{
    struct sol_affinity a;
    struct sol_affinity_stats st;
    CHECK(sol_affinity_init(&a, 4) == 0, "init");
    for (unsigned i = 1; i <= 4; i++)
        sol_affinity_remember(&a, 100 + i, i, 1000);
    /* MRU..LRU: 104 103 102 101 */
    CHECK(sol_affinity_lookup(&a, 101, 0) == 1, "101");
    /* 101 104 103 102 */
    sol_affinity_remember(&a, 105, 5, 1000); /* evicts 102 */
    CHECK(sol_affinity_lookup(&a, 102, 0) == -1, "102 not evicted");
    sol_affinity_remember(&a, 103, 9, 1000); /* update: 103 105 101 104 */
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 4 && st.evictions == 1 && st.updates == 1 && st.inserts == 5,
          "stats %llu %llu %llu %llu", (unsigned long long)st.entries,
          (unsigned long long)st.evictions, (unsigned long long)st.updates,
          (unsigned long long)st.inserts);
    sol_affinity_remember(&a, 106, 6, 1000); /* evicts 104 */
    CHECK(sol_affinity_lookup(&a, 104, 0) == -1, "104 not evicted");
    CHECK(sol_affinity_lookup(&a, 101, 0) == 1, "101 lost");
    CHECK(sol_affinity_lookup(&a, 103, 0) == 9, "103 not updated");
    CHECK(sol_affinity_lookup(&a, 105, 0) == 5, "105 lost");
    CHECK(sol_affinity_lookup(&a, 106, 0) == 6, "106 lost");
    sol_affinity_get_stats(&a, &st);
    CHECK(st.hits == 5 && st.misses == 2 && st.evictions == 2 && st.capacity == 4,
          "hits %llu misses %llu", (unsigned long long)st.hits, (unsigned long long)st.misses);
    /* Key 0 and huge node indexes are refused; key 0 is not a lookup. */
    sol_affinity_remember(&a, 0, 1, 1000);
    sol_affinity_remember(&a, 107, 0x80000000u, 1000);
    CHECK(sol_affinity_lookup(&a, 0, 0) == -1 && sol_affinity_lookup(&a, 107, 0) == -1,
          "key 0 or node > INT32_MAX stored");
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 4 && st.misses == 3, "refused inputs counted");
    sol_affinity_clear(&a);
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 0 && st.forgotten == 4 && sol_affinity_lookup(&a, 101, 0) == -1, "clear");
    sol_affinity_free(&a);
    sol_affinity_free(&a); /* twice is fine */

    /* Only the last `capacity` keys survive a long run of inserts. */
    CHECK(sol_affinity_init(&a, 1000) == 0, "init 1000");
    for (uint64_t k = 1; k <= 5000; k++)
        sol_affinity_remember(&a, k * 0x9e3779b97f4a7c15ull, (unsigned)(k % 7), UINT64_MAX);
    unsigned found = 0, right = 0;
    for (uint64_t k = 1; k <= 5000; k++) {
        int r = sol_affinity_lookup(&a, k * 0x9e3779b97f4a7c15ull, 0);
        if (r >= 0) {
            found++;
            right += k > 4000 && r == (int)(k % 7);
        }
    }
    sol_affinity_get_stats(&a, &st);
    CHECK(found == 1000 && right == 1000 && st.evictions == 4000, "found %u right %u", found,
          right);
    sol_affinity_free(&a);

    /* Defaults, limits, and a zeroed memory. */
    CHECK(sol_affinity_init(&a, 0) == 0 && a.capacity == SOL_AFFINITY_DEFAULT_CAPACITY,
          "default capacity");
    sol_affinity_free(&a);
    CHECK(sol_affinity_init(&a, SOL_AFFINITY_MAX_CAPACITY + 1) == -1 && a.slots == NULL,
          "over the limit");
    sol_affinity_remember(&a, 5, 1, 10);
    CHECK(sol_affinity_lookup(&a, 5, 0) == -1 && sol_affinity_forget_node(&a, 1) == 0 &&
              sol_affinity_sweep(&a, 0) == 0,
          "zeroed memory remembers");
    sol_affinity_clear(&a);
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 0 && st.hits == 0, "zeroed stats");
}

static void test_expiry(void)
{
    struct sol_affinity a;
    struct sol_affinity_stats st;
    sol_affinity_init(&a, 16);
    sol_affinity_remember(&a, 7, 3, 1000);
    CHECK(sol_affinity_lookup(&a, 7, 0) == 3, "at 0");
    CHECK(sol_affinity_lookup(&a, 7, 999) == 3, "at 999");
    CHECK(sol_affinity_lookup(&a, 7, 1000) == -1, "at 1000 (expires_at is exclusive)");
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 0 && st.expired == 1 && st.hits == 2 && st.misses == 1,
          "expired entry not dropped");
    CHECK(sol_affinity_lookup(&a, 7, 0) == -1, "dropped entry back");
    /* A hit does not extend the expiry; remember does. */
    sol_affinity_remember(&a, 8, 1, 500);
    CHECK(sol_affinity_lookup(&a, 8, 499) == 1, "8 at 499");
    CHECK(sol_affinity_lookup(&a, 8, 500) == -1, "a hit extended the expiry");
    sol_affinity_remember(&a, 9, 1, 500);
    sol_affinity_remember(&a, 9, 2, 800);
    CHECK(sol_affinity_lookup(&a, 9, 799) == 2 && sol_affinity_lookup(&a, 9, 800) == -1,
          "remember did not extend");

    CHECK(sol_affinity_expiry(100, 300000) == 300100, "expiry");
    CHECK(sol_affinity_expiry(100, -1) == UINT64_MAX, "negative keep_alive");
    CHECK(sol_affinity_expiry(100, 0) == 100, "keep_alive 0");
    CHECK(sol_affinity_expiry(UINT64_MAX - 5, 10) == UINT64_MAX, "no overflow");
    sol_affinity_remember(&a, 10, 4, sol_affinity_expiry(100, 0));
    CHECK(sol_affinity_lookup(&a, 10, 100) == -1, "keep_alive 0 remembered");
    sol_affinity_remember(&a, 11, 4, sol_affinity_expiry(100, -1));
    CHECK(sol_affinity_lookup(&a, 11, UINT64_MAX - 1) == 4, "forever expired");

    /* sweep drops exactly the expired entries. */
    sol_affinity_clear(&a);
    for (unsigned i = 0; i < 10; i++)
        sol_affinity_remember(&a, 20 + i, i, 100 + 10 * i);  /* 100, 110, ... 190 */
    CHECK(sol_affinity_sweep(&a, 150) == 6, "sweep at 150"); /* 100..150 */
    for (unsigned i = 0; i < 10; i++)
        CHECK((sol_affinity_lookup(&a, 20 + i, 0) >= 0) == (i > 5), "after sweep: %u", i);
    sol_affinity_free(&a);
}

static void test_forget_node(void)
{
    struct sol_affinity a;
    sol_affinity_init(&a, 256);
    for (unsigned i = 0; i < 100; i++)
        sol_affinity_remember(&a, 1000 + i, i % 5, 1000);
    CHECK(sol_affinity_forget_node(&a, 2) == 20, "forget 2");
    CHECK(sol_affinity_forget_node(&a, 2) == 0, "forget 2 twice");
    CHECK(sol_affinity_forget_node(&a, 9) == 0, "forget unknown");
    unsigned bad = 0;
    for (unsigned i = 0; i < 100; i++) {
        int r = sol_affinity_lookup(&a, 1000 + i, 0);
        bad += i % 5 == 2 ? r != -1 : r != (int)(i % 5);
    }
    struct sol_affinity_stats st;
    sol_affinity_get_stats(&a, &st);
    CHECK(bad == 0 && st.entries == 80 && st.forgotten == 20, "bad %u entries %llu", bad,
          (unsigned long long)st.entries);
    /* The freed slots are reused without evicting. */
    for (unsigned i = 0; i < 176; i++)
        sol_affinity_remember(&a, 5000 + i, 7, 1000);
    sol_affinity_get_stats(&a, &st);
    CHECK(st.entries == 256 && st.evictions == 0, "slots not reused");
    sol_affinity_free(&a);
}

/* Random operations against a brute-force LRU with expiry. */
#define REF_KEYS 48
#define REF_CAP  16
static void test_against_reference(void)
{
    struct {
        int present;
        unsigned node;
        uint64_t expires, used;
    } ref[REF_KEYS] = {{0}};
    struct sol_affinity a;
    sol_affinity_init(&a, REF_CAP);
    uint64_t tick = 0, now = 0;
    unsigned count = 0, mismatches = 0;
    for (int op = 0; op < 200000; op++) {
        unsigned k = (unsigned)(rnd() % REF_KEYS);
        uint64_t key = 0x1000 + k * 0x10001ull; /* many keys share buckets */
        now += rnd() % 3;
        unsigned what = (unsigned)(rnd() % 100);
        if (what < 50) {
            int want = -1;
            if (ref[k].present && now >= ref[k].expires) {
                ref[k].present = 0;
                count--;
            } else if (ref[k].present) {
                want = (int)ref[k].node;
                ref[k].used = ++tick;
            }
            int got = sol_affinity_lookup(&a, key, now);
            mismatches += got != want;
        } else if (what < 98) {
            unsigned node = (unsigned)(rnd() % 6);
            uint64_t exp = now + rnd() % 60;
            if (!ref[k].present) {
                if (count == REF_CAP) {
                    unsigned victim = 0;
                    uint64_t oldest = UINT64_MAX;
                    for (unsigned j = 0; j < REF_KEYS; j++)
                        if (ref[j].present && ref[j].used < oldest) {
                            oldest = ref[j].used;
                            victim = j;
                        }
                    ref[victim].present = 0;
                    count--;
                }
                ref[k].present = 1;
                count++;
            }
            ref[k].node = node;
            ref[k].expires = exp;
            ref[k].used = ++tick;
            sol_affinity_remember(&a, key, node, exp);
        } else {
            unsigned node = (unsigned)(rnd() % 6), n = 0;
            for (unsigned j = 0; j < REF_KEYS; j++)
                if (ref[j].present && ref[j].node == node) {
                    ref[j].present = 0;
                    count--;
                    n++;
                }
            mismatches += sol_affinity_forget_node(&a, node) != n;
        }
        struct sol_affinity_stats st;
        sol_affinity_get_stats(&a, &st);
        mismatches += st.entries != count;
    }
    CHECK(mismatches == 0, "%u mismatches with the reference LRU", mismatches);
    sol_affinity_free(&a);
}

/* ---- rendezvous ------------------------------------------------------- */

#define RV_KEYS 10000

static void test_rendezvous(void)
{
    uint64_t ids[6], keys[RV_KEYS];
    char name[64];
    for (unsigned i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "http://10.0.0.%u:11434", i + 1);
        ids[i] = sol_affinity_node_id(name);
    }
    for (unsigned i = 0; i < RV_KEYS; i++)
        keys[i] = rnd();
    static int five[RV_KEYS], four[RV_KEYS], six[RV_KEYS];
    unsigned share[6] = {0};
    unsigned char without3[5] = {1, 1, 1, 0, 1};
    for (unsigned i = 0; i < RV_KEYS; i++) {
        five[i] = sol_rendezvous_pick(keys[i], ids, NULL, 5);
        four[i] = sol_rendezvous_pick(keys[i], ids, without3, 5);
        six[i] = sol_rendezvous_pick(keys[i], ids, NULL, 6);
        if (five[i] >= 0)
            share[five[i]]++;
    }
    for (unsigned n = 0; n < 5; n++)
        CHECK(share[n] >= 1600 && share[n] <= 2400, "node %u has %u of 10000 keys (fair 2000)", n,
              share[n]);

    /* Removing node 3 moves exactly the keys that were on it. */
    unsigned moved = 0, wrong = 0;
    for (unsigned i = 0; i < RV_KEYS; i++) {
        if (five[i] == 3) {
            moved++;
            wrong += four[i] == 3 || four[i] < 0;
        } else {
            wrong += four[i] != five[i];
        }
    }
    CHECK(wrong == 0 && moved == share[3], "removal: %u wrong, %u moved", wrong, moved);

    /* Adding node 5 moves keys only to it, about 1/6 of them. */
    moved = wrong = 0;
    for (unsigned i = 0; i < RV_KEYS; i++) {
        if (six[i] != five[i]) {
            moved++;
            wrong += six[i] != 5;
        }
    }
    CHECK(wrong == 0, "addition moved %u keys elsewhere than the new node", wrong);
    CHECK(moved >= RV_KEYS / 6 * 8 / 10 && moved <= RV_KEYS / 6 * 12 / 10,
          "addition moved %u keys (expected ~%u)", moved, RV_KEYS / 6);

    /* Determinism, and independence from table order (other daemons may
     * list the nodes differently). */
    uint64_t rev[5];
    for (unsigned i = 0; i < 5; i++)
        rev[i] = ids[4 - i];
    wrong = 0;
    for (unsigned i = 0; i < RV_KEYS; i++) {
        wrong += sol_rendezvous_pick(keys[i], ids, NULL, 5) != five[i];
        int r = sol_rendezvous_pick(keys[i], rev, NULL, 5);
        wrong += r < 0 || rev[r] != ids[five[i]];
    }
    CHECK(wrong == 0, "%u non-deterministic or order-dependent picks", wrong);

    /* Edges. */
    unsigned char none[5] = {0};
    CHECK(sol_rendezvous_pick(1, ids, NULL, 0) == -1, "n = 0");
    CHECK(sol_rendezvous_pick(1, ids, none, 5) == -1, "none eligible");
    CHECK(sol_rendezvous_pick(1, NULL, NULL, 5) == -1, "NULL ids");
    unsigned char only2[5] = {0, 0, 1, 0, 0};
    CHECK(sol_rendezvous_pick(12345, ids, only2, 5) == 2, "single eligible");
    uint64_t dup[3] = {77, 77, 77};
    CHECK(sol_rendezvous_pick(99, dup, NULL, 3) == 0, "duplicate ids: lower index");
    CHECK(sol_affinity_node_id("http://a:1") != sol_affinity_node_id("http://a:2") &&
              sol_affinity_node_id("x") == sol_affinity_node_id("x") &&
              sol_affinity_node_id(NULL) != 0,
          "node ids");
}

/* ---- pick, across turns and daemons ----------------------------------- */

static void test_pick(void)
{
    uint64_t ids[5];
    char name[64];
    for (unsigned i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "http://gpu-%u:11434", i);
        ids[i] = sol_affinity_node_id(name);
    }
    struct sol_affinity a;
    sol_affinity_init(&a, 64);
    struct sol_affinity_keys k = {.lookup = 111, .remember = 222, .anchor = 333};
    enum sol_affinity_source src;
    int rv = sol_rendezvous_pick(333, ids, NULL, 5);
    CHECK(sol_affinity_pick(&a, &k, ids, NULL, 5, 0, &src) == rv && src == SOL_AFFINITY_RENDEZVOUS,
          "empty memory: rendezvous");
    unsigned other = (unsigned)(rv + 1) % 5;
    sol_affinity_remember(&a, 111, other, 100);
    CHECK(sol_affinity_pick(&a, &k, ids, NULL, 5, 50, &src) == (int)other &&
              src == SOL_AFFINITY_REMEMBERED,
          "remembered node not preferred");
    unsigned char elig[5] = {1, 1, 1, 1, 1};
    elig[other] = 0;
    int r = sol_affinity_pick(&a, &k, ids, elig, 5, 50, &src);
    CHECK(r == sol_rendezvous_pick(333, ids, elig, 5) && r != (int)other &&
              src == SOL_AFFINITY_RENDEZVOUS,
          "ineligible remembered node chosen");
    CHECK(sol_affinity_lookup(&a, 111, 50) == (int)other, "ineligible node forgotten");
    CHECK(sol_affinity_pick(&a, &k, ids, NULL, 5, 100, &src) == rv &&
              src == SOL_AFFINITY_RENDEZVOUS,
          "expired entry used");
    sol_affinity_remember(&a, 111, 9, 1000); /* index beyond the table */
    CHECK(sol_affinity_pick(&a, &k, ids, NULL, 5, 0, NULL) == rv, "index >= n used");
    struct sol_affinity_keys none = {0};
    CHECK(sol_affinity_pick(&a, &none, ids, NULL, 5, 0, &src) == -1 && src == SOL_AFFINITY_NONE,
          "unkeyed request picked");
    unsigned char zero[5] = {0};
    CHECK(sol_affinity_pick(&a, &k, ids, zero, 5, 0, &src) == -1 && src == SOL_AFFINITY_NONE,
          "nothing eligible picked");
    CHECK(sol_affinity_pick(&a, NULL, ids, NULL, 5, 0, &src) == -1, "NULL keys picked");
    CHECK(sol_affinity_pick(NULL, &k, ids, NULL, 5, 0, &src) == rv &&
              src == SOL_AFFINITY_RENDEZVOUS,
          "no memory: rendezvous");
    sol_affinity_free(&a);

    /*
     * The lifecycle over the scripted chat, twice. Daemon A picks, "serves"
     * and remembers every turn; daemon B shares nothing and sees the
     * conversation only from turn 3. First run: the scorer always follows
     * the affinity node, so A's conversation stays on the anchor's
     * rendezvous node and B agrees with A. Second run: the scorer overrode
     * the affinity at turn 1 (say that node was busy); A then follows its
     * memory, not the rendezvous node.
     */
    struct sb b = {0};
    for (int run = 0; run < 2; run++) {
        struct sol_affinity da, db;
        sol_affinity_init(&da, 64);
        sol_affinity_init(&db, 64);
        int served[6] = {0};
        uint64_t now = 1000;
        for (int t = 1; t <= 5; t++) {
            ollama_turn(&b, t, t % 2, "llama3.2:latest");
            struct sol_affinity_keys kt = chat_keys(b.p, "llama3.2:latest");
            int anchor_node = sol_rendezvous_pick(kt.anchor, ids, NULL, 5);
            int pa = sol_affinity_pick(&da, &kt, ids, NULL, 5, now, &src);
            if (t == 1)
                CHECK(src == SOL_AFFINITY_RENDEZVOUS && pa == anchor_node,
                      "run %d turn 1: A should rendezvous", run);
            else
                CHECK(src == SOL_AFFINITY_REMEMBERED && pa == served[t - 1],
                      "run %d turn %d: A lost the conversation (%d vs %d)", run, t, pa,
                      served[t - 1]);
            served[t] = run == 1 && t == 1 ? (anchor_node + 1) % 5 : pa;
            sol_affinity_remember(&da, kt.remember, (unsigned)served[t],
                                  sol_affinity_expiry(now, SOL_AFFINITY_DEFAULT_KEEP_ALIVE_MS));
            if (t >= 3) {
                int pb = sol_affinity_pick(&db, &kt, ids, NULL, 5, now, &src);
                CHECK(src == SOL_AFFINITY_RENDEZVOUS && pb == anchor_node,
                      "run %d turn %d: B should rendezvous on the anchor", run, t);
                if (run == 0)
                    CHECK(pb == served[t], "turn %d: B (%d) disagrees with A (%d)", t, pb,
                          served[t]);
            }
            /* Each turn lands before the previous one's keep_alive ends. */
            now += SOL_AFFINITY_DEFAULT_KEEP_ALIVE_MS - 1;
        }
        sol_affinity_free(&da);
        sol_affinity_free(&db);
    }
    free(b.p);
}

int main(void)
{
    test_chat_two_keys();
    test_chat_canonical();
    test_chat_openai();
    test_generate();
    test_session();
    test_lru();
    test_expiry();
    test_forget_node();
    test_against_reference();
    test_rendezvous();
    test_pick();
    return check_summary();
}
