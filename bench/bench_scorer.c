/*
 * bench_scorer - nanoseconds per sol_scorer_pick() decision.
 *
 * Builds node tables of 8, 64 and 512 nodes, each node holding 8 of 16
 * models with random loaded / in-flight / learned-speed states (a few nodes
 * down or with an open breaker), then times batches of decisions over a
 * rotating set of requests (different models, sizes, affinity, tried sets).
 * Prints the median of several runs, without and with an explanation, in
 * thread CPU time.
 *
 * Usage: bench_scorer [runs]   (default 7). Not a test: build with -O2.
 */
#include "base/breaker.h"
#include "base/model_name.h"
#include "base/node.h"
#include "base/scorer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define N_MODELS 16
#define PER_NODE 8
#define N_REQS   1024
#define NOW_MS   1000000u

static double rnd_unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static uint64_t model_keys[N_MODELS];

struct bench_table {
    struct sol_node_table t;
    struct sol_node **nodes;
};

static struct bench_table build(unsigned count)
{
    struct bench_table b;
    b.nodes = calloc(count, sizeof *b.nodes);
    if (!b.nodes)
        abort();
    struct sol_breaker_conf bc;
    sol_breaker_conf_defaults(&bc);
    for (unsigned i = 0; i < count; i++) {
        struct sol_node *n = calloc(1, sizeof *n);
        char *name = malloc(16);
        if (!n || !name)
            abort();
        snprintf(name, 16, "node-%u", i);
        n->index = i;
        n->name = name;
        n->max_concurrent = 1 + (unsigned)(rnd() % 4);
        n->weight = rnd() % 4 == 0 ? 2.0 : 1.0;
        n->state = rnd() % 20 == 0 ? SOL_NODE_DOWN : SOL_NODE_UP;
        sol_breaker_init(&n->breaker);
        if (rnd() % 20 == 0)
            for (unsigned k = 0; k < bc.failure_threshold; k++)
                sol_breaker_on_failure(&n->breaker, &bc, NOW_MS);
        n->rtt_ms = rnd() % 3 ? 0.2 + 5 * rnd_unit() : 0;
        n->in_flight = (unsigned)(rnd() % 7);
        n->models = calloc(PER_NODE, sizeof *n->models);
        if (!n->models)
            abort();
        n->cap_models = PER_NODE;
        /* 8 distinct models of the 16, starting at a random offset */
        unsigned first = (unsigned)(rnd() % N_MODELS);
        for (unsigned k = 0; k < PER_NODE; k++) {
            struct sol_node_model *m = &n->models[n->n_models++];
            unsigned id = (first + k * 2) % N_MODELS;
            snprintf(m->name, sizeof m->name, "bench-model-%u:latest", id);
            m->key = model_keys[id];
            m->installed = 1;
            m->loaded = rnd() % 3 == 0;
            if (rnd() % 2) {
                m->gen_tps = 10 + 90 * rnd_unit();
                m->prompt_tps = 200 + 2000 * rnd_unit();
                m->load_ms = 1000 + 20000 * rnd_unit();
                m->samples = 10;
            }
        }
        if (sol_node_models_reindex(n) < 0) /* as health.c keeps it */
            abort();
        b.nodes[i] = n;
    }
    b.t.nodes = b.nodes;
    b.t.count = count;
    return b;
}

static void destroy(struct bench_table *b)
{
    for (unsigned i = 0; i < b->t.count; i++) {
        free(b->nodes[i]->models);
        free(b->nodes[i]->model_index);
        free(b->nodes[i]->name);
        free(b->nodes[i]);
    }
    free(b->nodes);
}

static struct sol_score_req reqs[N_REQS];
static struct sol_tried trieds[N_REQS];

static void build_requests(unsigned nodes)
{
    for (unsigned i = 0; i < N_REQS; i++) {
        struct sol_score_req *r = &reqs[i];
        r->model_key = model_keys[rnd() % N_MODELS];
        r->prompt_tokens = (double)(rnd() % 4000);
        r->num_predict = rnd() % 2 ? (long long)(rnd() % 1000) : 0;
        r->embedding = rnd() % 10 == 0;
        r->affinity_node = rnd() % 2 ? (int)(rnd() % nodes) : -1;
        trieds[i].count = (unsigned)(rnd() % 3);
        for (unsigned k = 0; k < trieds[i].count; k++)
            trieds[i].index[k] = (unsigned)(rnd() % nodes);
        r->tried = &trieds[i];
    }
}

/* Thread CPU time, not wall time: on a shared machine a preempted run
 * would otherwise count other processes' time as ours. */

static volatile unsigned long sink;

/* One run: `decisions` picks; returns ns per decision. */
static double run(struct sol_scorer *s, const struct sol_node_table *t, unsigned long decisions,
                  int with_explain)
{
    struct sol_score_explain e;
    unsigned long acc = 0;
    double t0 = now_ns();
    for (unsigned long i = 0; i < decisions; i++) {
        struct sol_node *n =
            sol_scorer_pick(s, t, &reqs[i % N_REQS], NOW_MS, with_explain ? &e : NULL);
        acc += n ? n->index + 1 : 0;
    }
    double t1 = now_ns();
    sink += acc;
    return (t1 - t0) / (double)decisions;
}

/* Median (and fastest, in *min) of `runs` runs: the median is the figure;
 * the minimum shows how much a busy machine inflated it. */
static double median_of(struct sol_scorer *s, const struct sol_node_table *t,
                        unsigned long decisions, int with_explain, int runs, double *min)
{
    double v[64];
    if (runs > 64)
        runs = 64;
    run(s, t, decisions / 10 + 1, with_explain); /* warm caches and branch predictors */
    for (int i = 0; i < runs; i++)
        v[i] = run(s, t, decisions, with_explain);
    qsort(v, (size_t)runs, sizeof v[0], cmp_double);
    *min = v[0];
    return v[runs / 2];
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;
    for (unsigned i = 0; i < N_MODELS; i++) {
        char name[64], canon[SOL_MODEL_NAME_MAX];
        snprintf(name, sizeof name, "bench-model-%u", i);
        if (sol_model_canonical(name, canon, sizeof canon) != 0)
            abort();
        model_keys[i] = sol_model_key(canon);
    }

    static const struct {
        unsigned nodes;
        unsigned long decisions;
    } sizes[] = {{8, 1000000}, {64, 1000000}, {512, 100000}};

    printf("sol_scorer_pick: %d node models each, median of %d runs\n", PER_NODE, runs);
    printf("%6s %10s %12s %10s %10s %12s\n", "nodes", "decisions", "ns/decision", "(min)",
           "ns/node", "+explain ns");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct bench_table b = build(sizes[i].nodes);
        build_requests(sizes[i].nodes);
        struct sol_scorer s;
        sol_scorer_init(&s, NULL, 42);
        double min_plain, min_expl;
        double plain = median_of(&s, &b.t, sizes[i].decisions, 0, runs, &min_plain);
        double expl = median_of(&s, &b.t, sizes[i].decisions, 1, runs, &min_expl);
        printf("%6u %10lu %12.1f %10.1f %10.2f %12.1f\n", sizes[i].nodes, sizes[i].decisions, plain,
               min_plain, plain / sizes[i].nodes, expl);
        destroy(&b);
    }
    return 0;
}
