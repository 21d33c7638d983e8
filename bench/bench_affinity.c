/*
 * bench_affinity - cost of prefix affinity per request.
 *
 * Key computation (sol_affinity_keys_chat) for a 20-message chat body of
 * about 8 KiB and for a 20-message body of about 1 MiB, each as prose
 * (sparse escapes) and as code-like text (an escape every ~35 bytes), next
 * to the cost of the validation scan every body already pays
 * (sol_json_scan_object);
 * sol_affinity_keys_generate for a 1 MiB prompt; the memory at 64k entries
 * (lookup hit, lookup miss, remember of a stored key, remember of a new key
 * that evicts); sol_rendezvous_pick for 5 and 64 nodes. Prints the median of several runs
 * (and the fastest) in thread CPU time.
 *
 * Usage: bench_affinity [runs]   (default 7). Not a test: build with -O2.
 */
#include "base/affinity.h"
#include "sollol/json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define N_KEYS 65536u

static volatile uint64_t sink;

struct text {
    char *p;
    size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            abort();
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* About `bytes` of JSON string content. Dense: code-like text with an
 * escape (\n or \") every ~35 bytes and some UTF-8. Sparse: prose, a
 * newline every ~400 bytes. */
static void content(struct text *t, size_t bytes, int dense)
{
    static const char *const words[] = {
        "the ",   "model ",  "keeps ", "a ",          "cache ", "of ",   "every ", "token ",
        "it ",    "has ",    "seen ",  "so ",         "and ",   "then ", "more ",  "text; ",
        "done. ", "x = 1; ", "\\n",    "\\\"it\\\" ", "café ",  "naïve "};
    const size_t n_words = sizeof words / sizeof words[0];
    size_t start = t->len;
    while (t->len - start < bytes) {
        if (dense)
            puts_(t, words[rnd() % n_words]);
        else
            puts_(t, rnd() % 80 ? words[rnd() % (n_words - 4)] : "\\n");
    }
}

/* A chat body of `n_msgs` messages of about `msg_bytes` content each. */
static struct text chat_body(unsigned n_msgs, size_t msg_bytes, int dense)
{
    struct text t = {0};
    puts_(&t, "{\"model\":\"llama3.2\",\"stream\":true,\"messages\":[");
    for (unsigned i = 0; i < n_msgs; i++) {
        puts_(&t, i ? "," : "");
        puts_(&t, i == 0  ? "{\"role\":\"system\",\"content\":\""
                  : i % 2 ? "{\"role\":\"user\",\"content\":\""
                          : "{\"role\":\"assistant\",\"content\":\"");
        content(&t, msg_bytes, dense);
        puts_(&t, "\"}");
    }
    puts_(&t, "]}");
    return t;
}

static struct sol_json_span messages_of(const struct text *t)
{
    struct sol_json_span obj = {t->p, t->len, SOL_JSON_OBJECT}, m = {0};
    char err[160];
    if (sol_json_scan_object(t->p, t->len, 64, NULL, NULL, err, sizeof err) != SOL_JSON_OK ||
        !sol_json_object_get(&obj, "messages", &m)) {
        fprintf(stderr, "bad body: %s\n", err);
        abort();
    }
    return m;
}

/* ---- the timed loops; each returns ns per operation ---- */

enum op {
    OP_SCAN,
    OP_CHAT,
    OP_GENERATE,
    OP_LOOKUP_HIT,
    OP_LOOKUP_MISS,
    OP_REMEMBER_UPDATE,
    OP_REMEMBER_INSERT,
    OP_RENDEZVOUS
};

struct ctx {
    const struct text *body;
    struct sol_json_span msgs;
    struct sol_affinity *mem;
    const uint64_t *stored, *absent, *node_ids;
    uint64_t next_new; /* fresh keys for inserts */
    unsigned nodes;
};

static double run(enum op op, struct ctx *c, unsigned long iters)
{
    uint64_t acc = 0;
    struct sol_affinity_keys k;
    double t0 = now_ns();
    for (unsigned long i = 0; i < iters; i++) {
        unsigned j = (unsigned)(i * 40503u) & (N_KEYS - 1);
        switch (op) {
        case OP_SCAN:
            acc +=
                (uint64_t)sol_json_scan_object(c->body->p, c->body->len, 64, NULL, NULL, NULL, 0);
            break;
        case OP_CHAT:
            sol_affinity_keys_chat(&c->msgs, "llama3.2:latest", &k);
            acc += k.lookup ^ k.remember ^ k.anchor;
            break;
        case OP_GENERATE:
            sol_affinity_keys_generate(c->body->p, c->body->len, "llama3.2:latest", &k);
            acc += k.lookup;
            break;
        case OP_LOOKUP_HIT:
            acc += (uint64_t)sol_affinity_lookup(c->mem, c->stored[j], 1000);
            break;
        case OP_LOOKUP_MISS:
            acc += (uint64_t)sol_affinity_lookup(c->mem, c->absent[j], 1000);
            break;
        case OP_REMEMBER_UPDATE:
            sol_affinity_remember(c->mem, c->stored[j], (unsigned)(i & 7), UINT64_MAX);
            break;
        case OP_REMEMBER_INSERT:
            /* Each new key evicts the least recently used one. */
            sol_affinity_remember(c->mem, c->next_new++ * 0x9e3779b97f4a7c15ull | 1,
                                  (unsigned)(i & 7), UINT64_MAX);
            break;
        case OP_RENDEZVOUS:
            acc += (uint64_t)sol_rendezvous_pick(c->stored[j], c->node_ids, NULL, c->nodes);
            break;
        }
    }
    double t1 = now_ns();
    sink += acc;
    return (t1 - t0) / (double)iters;
}

static double median_of(enum op op, struct ctx *c, unsigned long iters, int runs, double *min)
{
    double v[64];
    if (runs > 64)
        runs = 64;
    run(op, c, iters / 10 + 1);
    for (int i = 0; i < runs; i++)
        v[i] = run(op, c, iters);
    qsort(v, (size_t)runs, sizeof v[0], cmp_double);
    *min = v[0];
    return v[runs / 2];
}

static void report(const char *what, enum op op, struct ctx *c, unsigned long iters, int runs,
                   size_t bytes)
{
    double min, med = median_of(op, c, iters, runs, &min);
    if (bytes)
        printf("%-44s %12.1f %12.1f %9.2f\n", what, med, min, (double)bytes / med);
    else
        printf("%-44s %12.1f %12.1f %9s\n", what, med, min, "-");
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;

    struct text bodies[4] = {chat_body(20, 380, 0), chat_body(20, 380, 1),
                             chat_body(20, 52 * 1024, 0), chat_body(20, 52 * 1024, 1)};
    struct text gen = {0};
    puts_(&gen, "{\"model\":\"llama3.2\",\"system\":\"be brief\",\"prompt\":\"");
    content(&gen, 1024 * 1024, 0);
    puts_(&gen, "\"}");

    printf("bench_affinity: median of %d runs, thread CPU time\n", runs);
    printf("%-44s %12s %12s %9s\n", "operation", "ns/op", "(min)", "GB/s");

    struct ctx c = {0};
    char label[96];
    for (int b = 0; b < 4; b++) {
        const char *kind = b % 2 ? "dense" : "sparse";
        c.body = &bodies[b];
        c.msgs = messages_of(c.body);
        unsigned long iters = b >= 2 ? 200 : 200000;
        snprintf(label, sizeof label, "scan (validation), %s, %zu B", kind, c.body->len);
        report(label, OP_SCAN, &c, iters, runs, c.body->len);
        snprintf(label, sizeof label, "keys_chat, 20 msgs, %s, %zu B", kind, c.body->len);
        report(label, OP_CHAT, &c, iters, runs, c.body->len);
    }
    if (sol_json_scan_object(gen.p, gen.len, 64, NULL, NULL, NULL, 0) != SOL_JSON_OK)
        abort();
    c.body = &gen;
    snprintf(label, sizeof label, "keys_generate, prompt, %zu B", gen.len);
    report(label, OP_GENERATE, &c, 200, runs, gen.len);

    /* The memory, full at 64k entries. */
    struct sol_affinity mem;
    if (sol_affinity_init(&mem, N_KEYS) != 0)
        abort();
    uint64_t *stored = malloc(N_KEYS * sizeof *stored), *absent = malloc(N_KEYS * sizeof *absent);
    if (!stored || !absent)
        abort();
    for (unsigned i = 0; i < N_KEYS; i++) {
        /* Even and nonzero: never equal to the odd keys inserted later. */
        stored[i] = (rnd() & ~1ull) | 2;
        absent[i] = (rnd() & ~1ull) | 2;
        sol_affinity_remember(&mem, stored[i], i & 7, UINT64_MAX);
    }
    c.mem = &mem;
    c.stored = stored;
    c.absent = absent;
    c.next_new = 1;
    report("lookup, hit (64k entries)", OP_LOOKUP_HIT, &c, 2000000, runs, 0);
    report("lookup, miss (64k entries)", OP_LOOKUP_MISS, &c, 2000000, runs, 0);
    report("remember, stored key (64k entries)", OP_REMEMBER_UPDATE, &c, 2000000, runs, 0);
    report("remember, new key + eviction (64k full)", OP_REMEMBER_INSERT, &c, 2000000, runs, 0);
    struct sol_affinity_stats st;
    sol_affinity_get_stats(&mem, &st);
    if (st.entries != N_KEYS)
        abort();

    uint64_t ids[64];
    for (unsigned i = 0; i < 64; i++) {
        char name[48];
        snprintf(name, sizeof name, "http://10.0.%u.%u:11434", i / 8, i % 8);
        ids[i] = sol_affinity_node_id(name);
    }
    c.node_ids = ids;
    c.nodes = 5;
    report("rendezvous_pick, 5 nodes", OP_RENDEZVOUS, &c, 2000000, runs, 0);
    c.nodes = 64;
    report("rendezvous_pick, 64 nodes", OP_RENDEZVOUS, &c, 2000000, runs, 0);

    sol_affinity_free(&mem);
    free(stored);
    free(absent);
    for (int b = 0; b < 4; b++)
        free(bodies[b].p);
    free(gen.p);
    return 0;
}
