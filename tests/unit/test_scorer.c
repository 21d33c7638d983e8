/*
 * Unit test of the scorer: hand-computed costs for each term, eligibility
 * (down, breaker, model, tried), saturation, weight, affinity, random tie
 * breaking, defaults for unmeasured nodes, the explanation and its header
 * rendering.
 *
 * Defaults used throughout (sol_scorer_conf_defaults): gen 30 tok/s, prompt
 * 500 tok/s, cold load 5 s, typical generation 256 tokens, affinity 0.1.
 * The base request has 100 prompt tokens and no num_predict, so on a
 * default node: prompt = 100/500 = 0.2 s, gen = 256/30 = 8.5333.. s,
 * s = 8.7333.. s.
 */
#include "base/scorer.h"

#include "base/breaker.h"
#include "base/model_name.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Equal to 1e-9 (absolute below 1, relative above). */
static int near(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (fabs(b) > 1 ? fabs(b) : 1);
}

#define NEAR(a, b) CHECK(near((a), (b)), "%s = %.12g, want %.12g", #a, (double)(a), (double)(b))

#define MAXN 16
#define MAXM 4

static const char *M = "llama3.2";       /* the requested model */
static const char *OTHER = "qwen2.5:7b"; /* some other model */

struct fixture {
    struct sol_node nodes[MAXN];
    struct sol_node *ptrs[MAXN];
    struct sol_node_model models[MAXN][MAXM];
    char names[MAXN][32];
    struct sol_node_table table;
    struct sol_scorer scorer;
};

static uint64_t key(const char *name)
{
    char c[SOL_MODEL_NAME_MAX];
    if (sol_model_canonical(name, c, sizeof c) != 0)
        abort();
    return sol_model_key(c);
}

/* n default nodes "n0".."n<n-1>": UP, 4 slots, weight 1, breaker closed,
 * no models. */
static void setup(struct fixture *f, unsigned n)
{
    memset(f, 0, sizeof *f);
    for (unsigned i = 0; i < n; i++) {
        struct sol_node *nd = &f->nodes[i];
        snprintf(f->names[i], sizeof f->names[i], "n%u", i);
        nd->index = i;
        nd->name = f->names[i];
        nd->max_concurrent = 4;
        nd->weight = 1;
        nd->state = SOL_NODE_UP;
        sol_breaker_init(&nd->breaker);
        nd->models = f->models[i];
        nd->cap_models = MAXM;
        f->ptrs[i] = nd;
    }
    f->table.nodes = f->ptrs;
    f->table.count = n;
    sol_scorer_init(&f->scorer, NULL, 12345);
}

/* Adds an installed model (no samples, not loaded) to node i. */
static struct sol_node_model *add(struct fixture *f, unsigned i, const char *name)
{
    struct sol_node *nd = &f->nodes[i];
    if (nd->n_models == MAXM)
        abort();
    struct sol_node_model *m = &nd->models[nd->n_models++];
    if (sol_model_canonical(name, m->name, sizeof m->name) != 0)
        abort();
    m->key = sol_model_key(m->name);
    m->installed = 1;
    return m;
}

static struct sol_score_req req_base(void)
{
    struct sol_score_req r = {key(M), 100, 0, 0, -1, NULL, 0, NULL};
    return r;
}

static struct sol_node *pick(struct fixture *f, const struct sol_score_req *r,
                             struct sol_score_explain *e)
{
    return sol_scorer_pick(&f->scorer, &f->table, r, 1000000, e);
}

static const struct sol_score_terms *terms_of(const struct sol_score_explain *e, unsigned node)
{
    for (unsigned i = 0; i < e->n_top; i++)
        if (e->top[i].node->index == node)
            return &e->top[i];
    return NULL;
}

static void test_defaults(void)
{
    struct sol_scorer_conf c;
    sol_scorer_conf_defaults(&c);
    CHECK(c.default_gen_tps == 30 && c.default_prompt_tps == 500 && c.default_load_ms == 5000 &&
              c.typical_predict == 256 && c.affinity_prompt_fraction == 0.1,
          "defaults");
    /* init replaces unusable values, keeps usable ones */
    struct sol_scorer s;
    struct sol_scorer_conf bad = {0, -1, NAN, INFINITY, 2};
    sol_scorer_init(&s, &bad, 1);
    CHECK(s.conf.default_gen_tps == 30 && s.conf.default_prompt_tps == 500 &&
              s.conf.default_load_ms == 5000 && s.conf.typical_predict == 256 &&
              s.conf.affinity_prompt_fraction == 1,
          "sanitised");
    struct sol_scorer_conf good = {10, 100, 1000, 64, 0};
    sol_scorer_init(&s, &good, 1);
    CHECK(s.conf.default_gen_tps == 10 && s.conf.default_prompt_tps == 100 &&
              s.conf.default_load_ms == 1000 && s.conf.typical_predict == 64 &&
              s.conf.affinity_prompt_fraction == 0,
          "kept");
}

/* Unmeasured nodes use the defaults; a measured one its own numbers. */
static void test_unknown_uses_defaults(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M); /* no samples at all */
    struct sol_node_model *m1 = add(&f, 1, M);
    m1->gen_tps = 60;
    m1->prompt_tps = 1000;
    m1->load_ms = 2000;
    m1->samples = 5;
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    struct sol_node *n = pick(&f, &r, &e);
    /* n0: wait 0, load 5, prompt 0.2, gen 256/30, rtt 0 -> 13.7333..
     * n1: wait 0, load 2, prompt 0.1, gen 256/60 = 4.2666.. -> 6.3666.. */
    CHECK(n == &f.nodes[1], "measured faster node wins");
    CHECK(e.candidates == 2 && e.n_top == 2 && e.skipped_total == 0, "counts");
    const struct sol_score_terms *t0 = terms_of(&e, 0), *t1 = terms_of(&e, 1);
    CHECK(t0 && t1, "both explained");
    if (t0 && t1) {
        NEAR(t0->wait, 0);
        NEAR(t0->load, 5);
        NEAR(t0->prompt, 0.2);
        NEAR(t0->gen, 256.0 / 30);
        NEAR(t0->rtt, 0);
        NEAR(t0->total, 5 + 0.2 + 256.0 / 30);
        NEAR(t1->load, 2);
        NEAR(t1->prompt, 0.1);
        NEAR(t1->gen, 256.0 / 60);
        NEAR(t1->total, 2 + 0.1 + 256.0 / 60);
    }
    CHECK(e.top[0].node == &f.nodes[1] && e.chosen == &f.nodes[1], "chosen first");
}

static void test_loaded_beats_unloaded(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M);             /* cold: 5 + 8.7333 = 13.7333 */
    add(&f, 1, M)->loaded = 1; /* warm: 0.2 + 8.5333 = 8.7333 */
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "loaded wins");
    NEAR(e.top[0].total, 0.2 + 256.0 / 30);
    NEAR(e.top[1].total, 5 + 0.2 + 256.0 / 30);
    /* a learned load time replaces the default */
    f.models[0][0].load_ms = 1500;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->load, 1.5);
}

static void test_idle_beats_busy(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M)->loaded = 1;
    f.nodes[0].in_flight = 2; /* 2 of 4 slots: gen x (1 + 2/4) = 12.8 */
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "idle wins");
    const struct sol_score_terms *t0 = terms_of(&e, 0);
    NEAR(t0->wait, 0);
    NEAR(t0->gen, 256.0 / 30 * 1.5);
    NEAR(t0->total, 0.2 + 12.8);
    NEAR(terms_of(&e, 1)->total, 0.2 + 256.0 / 30);
}

/* Long generation: decode speed dominates. Tiny one: distance dominates. */
static void test_fast_vs_close(void)
{
    struct fixture f;
    setup(&f, 2);
    struct sol_node_model *fast = add(&f, 0, M), *slow = add(&f, 1, M);
    fast->loaded = slow->loaded = 1;
    fast->gen_tps = 100;
    fast->prompt_tps = 1000;
    f.nodes[0].rtt_ms = 50;
    slow->gen_tps = 20;
    slow->prompt_tps = 500;
    f.nodes[1].rtt_ms = 1;

    struct sol_score_req r = req_base();
    r.num_predict = 1000;
    struct sol_score_explain e;
    /* fast: 100/1000 + 1000/100 + 0.05 = 10.15; slow: 0.2 + 50 + 0.001 = 50.201 */
    CHECK(pick(&f, &r, &e) == &f.nodes[0], "fast node wins a long generation");
    NEAR(terms_of(&e, 0)->total, 10.15);
    NEAR(terms_of(&e, 1)->total, 50.201);
    NEAR(terms_of(&e, 0)->rtt, 0.05);

    r.prompt_tokens = 1;
    r.num_predict = 1;
    /* fast: 0.001 + 0.01 + 0.05 = 0.061; slow: 0.002 + 0.05 + 0.001 = 0.053 */
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "close node wins a tiny request");
    NEAR(terms_of(&e, 0)->total, 0.061);
    NEAR(terms_of(&e, 1)->total, 0.053);
}

static void test_ineligible_never_chosen(void)
{
    struct fixture f;
    setup(&f, 9);
    /* nodes 0..7 are excellent but ineligible; node 8 is slow and cold */
    for (unsigned i = 0; i < 8; i++) {
        struct sol_node_model *m = add(&f, i, M);
        m->loaded = 1;
        m->gen_tps = 1000;
        m->prompt_tps = 10000;
        f.nodes[i].weight = 100;
    }
    add(&f, 8, M)->gen_tps = 1;
    f.nodes[0].state = SOL_NODE_DOWN;
    f.nodes[1].state = SOL_NODE_MISCONFIGURED;
    struct sol_breaker_conf bc;
    sol_breaker_conf_defaults(&bc);
    for (int k = 0; k < 3; k++)
        sol_breaker_on_failure(&f.nodes[2].breaker, &bc, 1000000 - 10); /* open until +990 */
    /* node 3: half-open with its trial in flight */
    for (int k = 0; k < 3; k++)
        sol_breaker_on_failure(&f.nodes[3].breaker, &bc, 0);
    sol_breaker_on_dispatch(&f.nodes[3].breaker, 1000);
    /* node 4: has only another model; node 5: listed but not installed;
     * node 6: gone; node 7: tried */
    f.models[4][0].key = key(OTHER);
    f.models[5][0].installed = 0;
    f.models[6][0].gone = 1;
    struct sol_tried tried = {1, {7}};

    struct sol_score_req r = req_base();
    r.tried = &tried;
    struct sol_score_explain e;
    struct sol_node *before = malloc(sizeof f.nodes);
    memcpy(before, f.nodes, sizeof f.nodes);
    CHECK(pick(&f, &r, &e) == &f.nodes[8], "only the eligible node");
    CHECK(memcmp(before, f.nodes, sizeof f.nodes) == 0, "the table is not written");
    free(before);
    CHECK(e.candidates == 1 && e.skipped_total == 8 && e.n_skipped == 8, "%u %u", e.candidates,
          e.skipped_total);
    enum sol_skip_reason want[8] = {SOL_SKIP_DOWN,       SOL_SKIP_MISCONFIGURED, SOL_SKIP_BREAKER,
                                    SOL_SKIP_BREAKER,    SOL_SKIP_NO_MODEL,      SOL_SKIP_NO_MODEL,
                                    SOL_SKIP_MODEL_GONE, SOL_SKIP_TRIED};
    for (unsigned i = 0; i < 8; i++)
        CHECK(e.skipped[i].node == &f.nodes[i] && e.skipped[i].reason == want[i], "node %u: %s", i,
              sol_skip_reason_name(e.skipped[i].reason));

    /* the breaker's cooldown passing makes node 2 eligible again */
    CHECK(sol_scorer_pick(&f.scorer, &f.table, &r, 1000000 + 990, NULL) == &f.nodes[2],
          "cooled-down breaker is a candidate");

    /* nothing eligible: NULL, explained */
    f.nodes[8].state = SOL_NODE_DOWN;
    CHECK(pick(&f, &r, &e) == NULL && e.chosen == NULL && e.n_top == 0 && e.candidates == 0,
          "none");
    CHECK(pick(&f, &r, NULL) == NULL, "none without explanation");
    /* unknown model */
    f.nodes[8].state = SOL_NODE_UP;
    r.model_key = key("nosuchmodel");
    CHECK(pick(&f, &r, NULL) == NULL, "nobody has it");
    /* empty table */
    f.table.count = 0;
    CHECK(pick(&f, &r, &e) == NULL && e.skipped_total == 0, "empty table");
}

static void test_saturated(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M); /* idle but cold: 5 + 8.7333 = 13.7333 */
    f.nodes[0].max_concurrent = 2;
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    double s = 0.2 + 256.0 / 30;

    /* 1 of 2 slots busy: gen x 1.5 = 12.8, + 0.2 = 13.0 < 13.7333: busy but
     * warm still beats a cold load */
    f.nodes[0].in_flight = 1;
    CHECK(pick(&f, &r, &e) == &f.nodes[0], "busy warm beats cold");
    NEAR(terms_of(&e, 0)->total, 13.0);

    /* 3 in flight on 2 slots: wait (3-2+1) * s / 2 = s = 8.7333, gen factor
     * stops at 1 + 1/2: 8.7333 + 0.2 + 12.8 = 21.7333 > 13.7333 */
    f.nodes[0].in_flight = 3;
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "saturated loses to a free node");
    NEAR(terms_of(&e, 0)->wait, s);
    NEAR(terms_of(&e, 0)->gen, 12.8);
    NEAR(terms_of(&e, 0)->total, s + 0.2 + 12.8);

    /* exactly full (2 of 2): wait 1 * s / 2 */
    f.nodes[0].in_flight = 2;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, s / 2);

    /* one slot, one running: wait a whole s, no sharing factor */
    f.nodes[0].max_concurrent = 1;
    f.nodes[0].in_flight = 1;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, s);
    NEAR(terms_of(&e, 0)->gen, 256.0 / 30);
    /* max_concurrent 0 is treated as 1 */
    f.nodes[0].max_concurrent = 0;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->total, 2 * s);

    /* the wait uses s without the affinity discount */
    f.nodes[0].max_concurrent = 1;
    r.affinity_node = 0;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, s);
    NEAR(terms_of(&e, 0)->prompt, 0.02);
}

/* A full node's wait comes from the expected ends of what runs there. */
static void test_wait_from_running_ends(void)
{
    struct fixture f;
    setup(&f, 1);
    add(&f, 0, M)->loaded = 1;
    f.nodes[0].max_concurrent = 2;
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    double s = 0.2 + 256.0 / 30;
    const uint64_t now = 1000000; /* pick()'s clock */
    uint64_t ends[3] = {now + 9000, now + 1500, now + 4000};
    f.nodes[0].running_eta = ends;

    /* full (2 of 2), two tracked ends: the sooner one frees our slot */
    f.nodes[0].in_flight = 2;
    f.nodes[0].n_running = 2;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, 1.5);

    /* one more queued ahead (3 of 2): we need the second end */
    f.nodes[0].in_flight = 3;
    f.nodes[0].n_running = 3;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, 4.0);

    /* two ahead beyond the three tracked: last end + s / k per extra slot */
    f.nodes[0].in_flight = 5;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, 9.0 + s / 2);

    /* the queue ahead counts (extra_in_flight) */
    unsigned extra[1] = {1};
    f.nodes[0].in_flight = 2;
    r.extra_in_flight = extra;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, 4.0);
    r.extra_in_flight = NULL;

    /* an attempt 2 s past its expected end is taken to need 2 s more */
    ends[1] = now - 2000;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->wait, 2.0);

    /* sol_scorer_cost() prices the same; ineligible -> infinity */
    NEAR(sol_scorer_cost(&f.scorer, &f.nodes[0], &r, now), terms_of(&e, 0)->total);
    r.free_slot_only = 1;
    CHECK(isinf(sol_scorer_cost(&f.scorer, &f.nodes[0], &r, now)), "saturated: infinite");
    r.free_slot_only = 0;

    /* service time: prompt + gen slowed by the 2 running (of 2 slots: one
     * can run beside us), no load */
    NEAR(sol_scorer_service_s(&f.scorer, &f.nodes[0], &r), 0.2 + 256.0 / 30 * 1.5);
    f.nodes[0].models[0].loaded = 0;
    f.nodes[0].in_flight = 0;
    NEAR(sol_scorer_service_s(&f.scorer, &f.nodes[0], &r), 5 + 0.2 + 256.0 / 30);
    f.nodes[0].running_eta = NULL;
    f.nodes[0].n_running = 0;
}

static void test_weight(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M)->loaded = 1;
    f.nodes[0].weight = 2;
    f.nodes[0].in_flight = 2; /* 13.0 / 2 = 6.5 < 8.7333 */
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    CHECK(pick(&f, &r, &e) == &f.nodes[0], "weight 2 wins while under twice the cost");
    NEAR(terms_of(&e, 0)->total, 13.0 / 2);
    NEAR(terms_of(&e, 0)->gen, 12.8); /* terms are before the division */
    f.nodes[0].in_flight = 0;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->total, (0.2 + 256.0 / 30) / 2);
    /* a non-positive weight counts as 1 */
    f.nodes[0].weight = 0;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->total, 0.2 + 256.0 / 30);
    f.nodes[0].weight = -3;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 0)->total, 0.2 + 256.0 / 30);
}

static void test_affinity(void)
{
    struct fixture f;
    setup(&f, 2);
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M)->loaded = 1;
    struct sol_score_req r = req_base();
    r.prompt_tokens = 5000; /* 10 s of prefill */
    r.affinity_node = 0;
    struct sol_score_explain e;
    /* n0: 0.1 * 10 + 8.5333 = 9.5333; n1: 10 + 8.5333 = 18.5333 */
    CHECK(pick(&f, &r, &e) == &f.nodes[0], "back to the prefix holder");
    NEAR(terms_of(&e, 0)->prompt, 1.0);
    NEAR(terms_of(&e, 0)->total, 1 + 256.0 / 30);
    NEAR(terms_of(&e, 1)->total, 10 + 256.0 / 30);

    /* somewhat busier: 1 + 12.8 = 13.8 < 18.5333, still back */
    f.nodes[0].in_flight = 2;
    CHECK(pick(&f, &r, &e) == &f.nodes[0], "busier but holds the prefix");
    NEAR(terms_of(&e, 0)->total, 13.8);

    /* much worse: cold with a 20 s load: 20 + 1 + 12.8 = 33.8 > 18.5333 */
    f.models[0][0].loaded = 0;
    f.models[0][0].load_ms = 20000;
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "not when much worse");
    NEAR(terms_of(&e, 0)->total, 33.8);

    /* affinity to the other node */
    f.models[0][0].loaded = 1;
    f.nodes[0].in_flight = 0;
    r.affinity_node = 1;
    CHECK(pick(&f, &r, &e) == &f.nodes[1], "affinity follows the index");
    /* fraction from the conf */
    f.scorer.conf.affinity_prompt_fraction = 0.5;
    pick(&f, &r, &e);
    NEAR(terms_of(&e, 1)->prompt, 5.0);
}

static void test_predict_and_embedding(void)
{
    struct fixture f;
    setup(&f, 1);
    add(&f, 0, M)->loaded = 1;
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    r.num_predict = 30; /* 30 / 30 = 1 s */
    pick(&f, &r, &e);
    NEAR(e.top[0].gen, 1.0);
    r.num_predict = -1; /* unset/infinite: typical 256 */
    pick(&f, &r, &e);
    NEAR(e.top[0].gen, 256.0 / 30);
    /* embedding: no generation, the prompt covers the inputs */
    r.embedding = 1;
    r.num_predict = 500;
    r.prompt_tokens = 1000;
    pick(&f, &r, &e);
    NEAR(e.top[0].gen, 0);
    NEAR(e.top[0].prompt, 2.0);
    NEAR(e.top[0].total, 2.0);
    /* negative or NaN prompt estimate counts as 0 */
    r.prompt_tokens = -5;
    pick(&f, &r, &e);
    NEAR(e.top[0].total, 0);
    r.prompt_tokens = NAN;
    pick(&f, &r, &e);
    NEAR(e.top[0].total, 0);
}

static void test_ties_random(void)
{
    struct fixture f;
    setup(&f, 3);
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M)->loaded = 1;
    add(&f, 2, M); /* cold: never chosen */
    struct sol_score_req r = req_base();
    unsigned count[3] = {0};
    for (int i = 0; i < 1000; i++) {
        struct sol_node *n = pick(&f, &r, NULL);
        if (n)
            count[n->index]++;
    }
    CHECK(count[0] + count[1] == 1000 && count[2] == 0, "%u %u %u", count[0], count[1], count[2]);
    CHECK(count[0] > 400 && count[1] > 400, "roughly even: %u / %u", count[0], count[1]);

    /* three-way tie, with explanation: chosen is always first */
    add(&f, 2, OTHER);
    f.models[2][0].loaded = 1;
    unsigned c3[3] = {0};
    struct sol_score_explain e;
    for (int i = 0; i < 3000; i++) {
        struct sol_node *n = pick(&f, &r, &e);
        c3[n->index]++;
        CHECK(e.top[0].node == n && e.chosen == n, "chosen first");
    }
    CHECK(c3[0] > 800 && c3[1] > 800 && c3[2] > 800, "%u %u %u", c3[0], c3[1], c3[2]);

    /* within 1e-9 relative is a tie; 1e-6 is not */
    f.nodes[2].rtt_ms = 1e-9; /* +1e-12 s on ~8.7 s */
    unsigned hit2 = 0;
    for (int i = 0; i < 300; i++)
        hit2 += pick(&f, &r, NULL) == &f.nodes[2];
    CHECK(hit2 > 30, "near-equal is still a tie: %u", hit2);
    f.nodes[2].rtt_ms = 0.01; /* +1e-5 s */
    hit2 = 0;
    for (int i = 0; i < 300; i++)
        hit2 += pick(&f, &r, NULL) == &f.nodes[2];
    CHECK(hit2 == 0, "a real difference is not: %u", hit2);

    /* seeded: the same seed gives the same sequence */
    unsigned seq1[20], seq2[20];
    sol_scorer_init(&f.scorer, NULL, 7);
    for (int i = 0; i < 20; i++)
        seq1[i] = pick(&f, &r, NULL)->index;
    sol_scorer_init(&f.scorer, NULL, 7);
    for (int i = 0; i < 20; i++)
        seq2[i] = pick(&f, &r, NULL)->index;
    CHECK(memcmp(seq1, seq2, sizeof seq1) == 0, "reproducible");

    /* more ties than explanation slots: the chosen one is still shown */
    setup(&f, 8);
    for (unsigned i = 0; i < 8; i++)
        add(&f, i, M)->loaded = 1;
    int late = 0;
    for (int i = 0; i < 200; i++) {
        struct sol_node *n = pick(&f, &r, &e);
        late += n->index >= 4;
        CHECK(e.n_top == 4 && e.top[0].node == n, "n_top %u", e.n_top);
    }
    CHECK(late > 50, "late tied nodes get picked: %d", late);
}

static void test_find_model(void)
{
    struct fixture f;
    setup(&f, 1);
    add(&f, 0, OTHER);
    struct sol_node_model *m = add(&f, 0, M);
    CHECK(sol_node_find_model(&f.nodes[0], key("llama3.2:latest")) == m, "found");
    CHECK(sol_node_find_model(&f.nodes[0], key("Llama3.2")) == m, "case-insensitive via key");
    CHECK(sol_node_find_model(&f.nodes[0], key("llama3.2:1b")) == NULL, "other tag");
    f.nodes[0].n_models = 0;
    CHECK(sol_node_find_model(&f.nodes[0], key(M)) == NULL, "empty");
}

/* Printable ASCII and none of the characters the format uses. */
static int header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void test_explain_format(void)
{
    struct fixture f;
    setup(&f, 4);
    strcpy(f.names[0], "gpu-a");
    strcpy(f.names[1], "gpu-b");
    strcpy(f.names[2], "gpu-c");
    strcpy(f.names[3], "gpu-d");
    add(&f, 0, M)->loaded = 1;
    add(&f, 1, M);
    f.nodes[0].rtt_ms = 2;
    f.nodes[2].state = SOL_NODE_DOWN;
    struct sol_tried tried = {1, {3}};
    struct sol_score_req r = req_base();
    r.tried = &tried;
    struct sol_score_explain e;
    pick(&f, &r, &e);
    char buf[512];
    int n = sol_scorer_explain_format(&e, buf, sizeof buf);
    const char *want = "gpu-a=8.735(wait=0,load=0,prompt=0.2,gen=8.533,rtt=0.002); "
                       "gpu-b=13.73(wait=0,load=5,prompt=0.2,gen=8.533,rtt=0); "
                       "skipped: gpu-c(down),gpu-d(tried)";
    CHECK(strcmp(buf, want) == 0, "\n got: %s\nwant: %s", buf, want);
    CHECK(n == (int)strlen(buf), "returned length %d", n);

    /* hostile names are sanitised */
    strcpy(f.names[0], "a;b,c=d(e)\"f'g\\h i\x01\xc3\xa9");
    f.nodes[1].name = NULL;
    strcpy(f.names[2], "");
    pick(&f, &r, &e);
    sol_scorer_explain_format(&e, buf, sizeof buf);
    CHECK(strncmp(buf, "a_b_c_d_e__f_g_h_i___=", 22) == 0, "%s", buf);
    CHECK(strstr(buf, "; #1=") != NULL, "missing name by index: %s", buf);
    CHECK(strstr(buf, "skipped: #2(down),gpu-d(tried)") != NULL, "%s", buf);
    CHECK(header_safe(buf), "header safe");

    /* long names are cut at 48 bytes */
    memset(f.names[0], 'x', 31);
    f.names[0][31] = '\0';
    char longname[100];
    memset(longname, 'y', 99);
    longname[99] = '\0';
    f.nodes[0].name = longname;
    pick(&f, &r, &e);
    sol_scorer_explain_format(&e, buf, sizeof buf);
    CHECK(strspn(buf, "y") == 48 && buf[48] == '=', "%s", buf);
    f.nodes[0].name = f.names[0];

    /* bounded: whole entries only, then " ..." */
    f.nodes[1].name = f.names[1];
    pick(&f, &r, &e);
    char full[512];
    int fulln = sol_scorer_explain_format(&e, full, sizeof full);
    for (size_t len = 0; len <= (size_t)fulln + 1; len++) {
        char small[512];
        memset(small, '#', sizeof small);
        int k = sol_scorer_explain_format(&e, small, len);
        CHECK(len == 0 ? k == 0 && small[0] == '#' : (size_t)k < len && small[k] == '\0',
              "len %zu: k %d", len, k);
        CHECK(small[len] == '#' || len == 0, "no write past len %zu", len);
        if (len > 0 && k > 0 && (size_t)k < (size_t)fulln) {
            CHECK(k >= 4 && strcmp(small + k - 4, " ...") == 0, "len %zu: %s", len, small);
            /* what precedes the ellipsis is a prefix of the full text ending
             * at an entry boundary */
            CHECK(strncmp(small, full, (size_t)k - 4) == 0, "prefix at %zu", len);
            char next = full[k - 4];
            CHECK(k == 4 || next == ';' || next == ',', "cut at a boundary (len %zu): '%c'", len,
                  next);
        }
    }
    CHECK(sol_scorer_explain_format(&e, full, (size_t)fulln + 1) == fulln, "exact fit");

    /* nothing chosen, many skipped: "none; skipped: ... +N" */
    setup(&f, 12);
    pick(&f, &r, &e);
    sol_scorer_explain_format(&e, buf, sizeof buf);
    CHECK(strcmp(buf, "none; skipped: n0(no-model),n1(no-model),n2(no-model),"
                      "n3(tried),n4(no-model),n5(no-model),n6(no-model),n7(no-model) +4") == 0,
          "%s", buf);
    CHECK(sol_scorer_explain_format(NULL, buf, sizeof buf) == 4 && strcmp(buf, "none") == 0,
          "NULL explanation");
    CHECK(strcmp(sol_skip_reason_name(SOL_SKIP_BREAKER), "breaker-open") == 0, "name");
    CHECK(strcmp(sol_skip_reason_name(SOL_SKIP_MODEL_GONE), "model-gone") == 0, "name");
}

/* top[] holds the 4 cheapest in order (chosen first). */
static void test_explain_top(void)
{
    struct fixture f;
    setup(&f, 6);
    for (unsigned i = 0; i < 6; i++) {
        add(&f, i, M)->loaded = 1;
        f.nodes[i].rtt_ms = 1000.0 * (double)((i * 5) % 6); /* 0,5,4,3,2,1 s */
    }
    struct sol_score_req r = req_base();
    struct sol_score_explain e;
    struct sol_node *n = pick(&f, &r, &e);
    CHECK(n == &f.nodes[0], "cheapest");
    CHECK(e.n_top == 4 && e.candidates == 6, "%u", e.n_top);
    for (unsigned i = 0; i < e.n_top; i++)
        NEAR(e.top[i].rtt, (double)i);
}

static uint64_t prng = 0x1234567;

static unsigned rnd(unsigned k)
{
    prng = prng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((prng >> 33) % k);
}

/* The formula as written at the top of scorer.h, term by term, to check
 * the scorer's rearranged arithmetic against. */
static double ref_cost(const struct sol_scorer_conf *cf, const struct sol_node *n,
                       const struct sol_node_model *m, const struct sol_score_req *r)
{
    double gen_tps = m->gen_tps > 0 ? m->gen_tps : cf->default_gen_tps;
    double prompt_tps = m->prompt_tps > 0 ? m->prompt_tps : cf->default_prompt_tps;
    double P = r->prompt_tokens > 0 ? r->prompt_tokens : 0;
    double G = r->embedding ? 0 : r->num_predict > 0 ? (double)r->num_predict : cf->typical_predict;
    double f = (int)n->index == r->affinity_node ? cf->affinity_prompt_fraction : 1;
    double s = P / prompt_tps + G / gen_tps;
    double c = n->in_flight, k = n->max_concurrent ? n->max_concurrent : 1;
    double prompt = f * P / prompt_tps;
    double gen = G / gen_tps * (1 + (c < k - 1 ? c : k - 1) / k);
    double wait = c >= k ? (c - k + 1) * s / k : 0;
    double load = m->loaded ? 0 : (m->load_ms > 0 ? m->load_ms : cf->default_load_ms) / 1000;
    double rtt = n->rtt_ms > 0 ? n->rtt_ms / 1000 : 0;
    double w = n->weight > 0 ? n->weight : 1;
    return (wait + load + prompt + gen + rtt) / w;
}

/* Random tables: the pick agrees with sol_scorer_eligible() on every node,
 * with the reference formula on every cost, and takes a minimum. */
static void test_random_tables(void)
{
    static struct fixture f;
    struct sol_breaker_conf bc;
    sol_breaker_conf_defaults(&bc);
    const uint64_t now = 1000000;
    int bad = 0;
    for (int round = 0; round < 2000 && bad < 5; round++) {
        unsigned count = 1 + rnd(MAXN);
        setup(&f, count);
        for (unsigned i = 0; i < count; i++) {
            struct sol_node *n = &f.nodes[i];
            n->state = rnd(10) < 8 ? SOL_NODE_UP : rnd(2) ? SOL_NODE_DOWN : SOL_NODE_MISCONFIGURED;
            n->max_concurrent = rnd(5); /* 0 allowed: counts as 1 */
            n->in_flight = rnd(8);
            n->weight = 0.5 * rnd(5); /* 0 allowed: counts as 1 */
            n->rtt_ms = rnd(3) ? 0.1 * rnd(100) : 0;
            switch (rnd(6)) {
            case 0: /* cooling down */
                for (unsigned k = 0; k < 3; k++)
                    sol_breaker_on_failure(&n->breaker, &bc, now - 10);
                break;
            case 1: /* cooled down, no trial yet */
                for (unsigned k = 0; k < 3; k++)
                    sol_breaker_on_failure(&n->breaker, &bc, now - 5000);
                break;
            case 2: /* trial in flight */
                for (unsigned k = 0; k < 3; k++)
                    sol_breaker_on_failure(&n->breaker, &bc, now - 5000);
                sol_breaker_on_dispatch(&n->breaker, now - 1);
                break;
            }
            static const char *names[] = {"llama3.2", "qwen2.5:7b", "phi3", "hf.co/a/b:q4"};
            unsigned nm = rnd(MAXM + 1);
            for (unsigned j = 0; j < nm; j++) {
                struct sol_node_model *m = add(&f, i, names[(i + j) % 4]);
                m->installed = rnd(10) != 0;
                m->gone = rnd(10) == 0;
                m->loaded = rnd(2);
                m->gen_tps = rnd(2) ? 5 + rnd(100) : 0;
                m->prompt_tps = rnd(2) ? 100 + rnd(1000) : 0;
                m->load_ms = rnd(2) ? 100 + rnd(20000) : 0;
            }
        }
        struct sol_tried tried = {rnd(4), {rnd(count), rnd(count), rnd(count)}};
        struct sol_score_req r = {key(M),
                                  (double)rnd(5000),
                                  (long long)rnd(600) - 100,
                                  rnd(8) == 0,
                                  (int)rnd(count + 1) - 1,
                                  &tried,
                                  0,
                                  NULL};
        if (r.embedding && rnd(2))
            r.tried = NULL;
        struct sol_score_explain e;
        struct sol_node *got = sol_scorer_pick(&f.scorer, &f.table, &r, now, &e);

        unsigned eligible = 0, skipped = 0;
        double min_cost = INFINITY;
        for (unsigned i = 0; i < count; i++) {
            enum sol_skip_reason why = SOL_SKIP_TRIED;
            if (sol_scorer_eligible(&f.nodes[i], &r, now, &why)) {
                eligible++;
                double c = ref_cost(&f.scorer.conf, &f.nodes[i],
                                    sol_node_find_model(&f.nodes[i], r.model_key), &r);
                min_cost = c < min_cost ? c : min_cost;
                const struct sol_score_terms *t = terms_of(&e, i);
                if (t && !near(t->total, c)) {
                    bad++;
                    CHECK(0, "round %d node %u: cost %.12g, reference %.12g", round, i, t->total,
                          c);
                }
            } else {
                if (skipped < e.n_skipped &&
                    (e.skipped[skipped].node != &f.nodes[i] || e.skipped[skipped].reason != why)) {
                    bad++;
                    CHECK(0, "round %d node %u: skipped as %s, eligible() says %s", round, i,
                          sol_skip_reason_name(e.skipped[skipped].reason),
                          sol_skip_reason_name(why));
                }
                skipped++;
            }
        }
        int ok = e.candidates == eligible && e.skipped_total == skipped &&
                 (eligible ? got != NULL && e.chosen == got : got == NULL);
        if (ok && got) {
            double c = ref_cost(&f.scorer.conf, got, sol_node_find_model(got, r.model_key), &r);
            ok = sol_scorer_eligible(got, &r, now, NULL) && c <= min_cost * (1 + 1e-9) &&
                 e.top[0].node == got;
            for (unsigned j = 2; ok && j < e.n_top; j++)
                ok = e.top[j - 1].total <= e.top[j].total;
        }
        if (!ok)
            bad++;
        CHECK(ok, "round %d: %u candidates (eligible %u), %u skipped (%u), chosen %p", round,
              e.candidates, eligible, e.skipped_total, skipped, (void *)got);
    }
}

int main(void)
{
    test_defaults();
    test_unknown_uses_defaults();
    test_loaded_beats_unloaded();
    test_idle_beats_busy();
    test_fast_vs_close();
    test_ineligible_never_chosen();
    test_saturated();
    test_wait_from_running_ends();
    test_weight();
    test_affinity();
    test_predict_and_embedding();
    test_ties_random();
    test_find_model();
    test_explain_format();
    test_explain_top();
    test_random_tables();
    return check_summary();
}
