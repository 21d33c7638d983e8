/*
 * test_balancer.c - the balancer's dispatch accounting: in_flight and the
 * running attempts' expected ends that the scorer prices a full node's
 * wait from.
 */
#include "nodes/balancer.h"

#include "base/breaker.h"
#include "base/config.h"
#include "base/model_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t fake_now = 5000000;

static uint64_t clock_ms(void *ud)
{
    (void)ud;
    return fake_now;
}

static void test_eta_tracking(void)
{
    struct sol_node_model model = {0};
    snprintf(model.name, sizeof model.name, "llama3.2:latest");
    model.key = sol_model_key(model.name);
    model.installed = model.loaded = 1;
    model.gen_tps = 100; /* 256 tokens: 2.56 s alone */
    model.prompt_tps = 1000;

    struct sol_node node = {0};
    node.name = "n0";
    node.max_concurrent = 2;
    node.weight = 1;
    node.state = SOL_NODE_UP;
    sol_breaker_init(&node.breaker);
    node.models = &model;
    node.n_models = node.cap_models = 1;
    struct sol_node *nodes[1] = {&node};
    struct sol_node_table table = {nodes, 1};

    struct sol_balancer b;
    sol_balancer_init(&b, &table, SOL_ROUTING_COST, NULL, NULL, clock_ms, NULL);
    struct sol_score_req req = {model.key, 100, 256, 0, -1, NULL, 0, NULL};

    uint64_t e1 = 0, e2 = 0, e3 = 0;
    CHECK(sol_balancer_get(&b, &req, NULL, &e1) == &node, "first dispatch");
    /* 0.1 s prompt + 2.56 s generation, nobody beside it */
    CHECK(e1 >= fake_now + 2659 && e1 <= fake_now + 2661, "eta %llu", (unsigned long long)e1);
    fake_now += 10;
    CHECK(sol_balancer_get(&b, &req, NULL, &e2) == &node, "second dispatch");
    /* one running beside it: generation x 1.5 */
    CHECK(e2 >= fake_now + 3939 && e2 <= fake_now + 3941, "eta %llu", (unsigned long long)e2);
    CHECK(sol_balancer_get(&b, &req, NULL, NULL) == &node, "untracked dispatch");
    CHECK(node.in_flight == 3 && node.n_running == 2, "in_flight %u running %u", node.in_flight,
          node.n_running);

    /* put() removes exactly the attempt it is given, in any order */
    struct sol_attempt_report rep = {.result = SOL_ATTEMPT_CANCELLED, .model_key = model.key};
    rep.eta_ms = e1;
    sol_balancer_put(&b, &node, &rep);
    CHECK(node.n_running == 1 && node.running_eta[0] == e2, "first removed");
    rep.eta_ms = 0; /* the untracked one */
    sol_balancer_put(&b, &node, &rep);
    CHECK(node.n_running == 1, "untracked put leaves the set");
    CHECK(sol_balancer_get_node(&b, &node, &req, &e3) == &node && e3 > 0, "pinned tracked");
    rep.eta_ms = e2;
    sol_balancer_put(&b, &node, &rep);
    rep.eta_ms = e3;
    sol_balancer_put(&b, &node, &rep);
    CHECK(node.in_flight == 0 && node.n_running == 0, "all returned");

    /* many at once: the set grows past its first allocation */
    uint64_t many[40];
    for (int i = 0; i < 40; i++)
        CHECK(sol_balancer_get_node(&b, &node, &req, &many[i]) == &node && many[i], "get %d", i);
    CHECK(node.n_running == 40, "40 tracked");
    for (int i = 39; i >= 0; i--) {
        rep.eta_ms = many[i];
        sol_balancer_put(&b, &node, &rep);
    }
    CHECK(node.in_flight == 0 && node.n_running == 0, "all returned again");
    free(node.running_eta);
}

/* Speeds of pairs without samples are inferred from the rest of the table. */
static void test_priors(void)
{
    struct sol_node_model models[3][2];
    struct sol_node nodes[3];
    struct sol_node *ptrs[3];
    memset(models, 0, sizeof models);
    memset(nodes, 0, sizeof nodes);
    uint64_t a = sol_model_key("a:latest"), bk = sol_model_key("b:latest");
    for (int i = 0; i < 3; i++) {
        nodes[i].index = (unsigned)i;
        nodes[i].name = "n";
        nodes[i].max_concurrent = 4;
        nodes[i].weight = 1;
        nodes[i].state = SOL_NODE_UP;
        sol_breaker_init(&nodes[i].breaker);
        nodes[i].models = models[i];
        nodes[i].n_models = nodes[i].cap_models = 2;
        models[i][0].key = a;
        models[i][1].key = bk;
        models[i][0].installed = models[i][1].installed = 1;
        ptrs[i] = &nodes[i];
    }
    struct sol_node_table table = {ptrs, 3};
    struct sol_balancer b;
    sol_balancer_init(&b, &table, SOL_ROUTING_COST, NULL, NULL, clock_ms, NULL);
    struct sol_score_req req = {a, 100, 256, 0, -1, NULL, 0, NULL};

    /* measured: n0 runs a at 80 and b at 40; n1 runs a at 20 (a quarter of
     * n0's speed); nothing measured on n2 */
    models[0][1].gen_tps = 40;
    models[1][0].gen_tps = 20;
    struct sol_attempt_report rep = {.result = SOL_ATTEMPT_OK, .model_key = a};
    rep.eval_count = 80;
    rep.eval_duration_ns = 1000000000ull; /* n0: a at 80 tokens/s */
    sol_balancer_get_node(&b, &nodes[0], &req, NULL);
    sol_balancer_put(&b, &nodes[0], &rep);
    CHECK(models[0][0].gen_tps == 80, "learned %g", models[0][0].gen_tps);
    /* fleet means: a 50, b 40. n1's ratio on a: 20/50 = 0.4, so its b is
     * inferred at 40 * 0.4 = 16 */
    CHECK(models[1][1].prior_gen_tps > 15.99 && models[1][1].prior_gen_tps < 16.01, "n1 b %g",
          models[1][1].prior_gen_tps);
    /* n2 has no sample at all: it keeps the defaults (so it gets explored) */
    CHECK(models[2][0].prior_gen_tps == 0 && models[2][1].prior_gen_tps == 0, "n2 %g %g",
          models[2][0].prior_gen_tps, models[2][1].prior_gen_tps);
    /* nothing measured for prompts: no inference */
    CHECK(models[1][1].prior_prompt_tps == 0, "no prompt prior");
    /* the scorer uses the prior: n1's inferred-slow b (16) loses to n0's
     * measured b (40) and to n2's default (30) */
    struct sol_score_req rb = {bk, 100, 256, 0, -1, NULL, 0, NULL};
    CHECK(sol_scorer_cost(&b.scorer, &nodes[1], &rb, fake_now) >
              sol_scorer_cost(&b.scorer, &nodes[2], &rb, fake_now),
          "inferred slow node costs more");
    /* a model nobody measured: the default scaled by the node's ratio */
    models[0][1].gen_tps = 0;
    sol_balancer_get_node(&b, &nodes[0], &req, NULL);
    sol_balancer_put(&b, &nodes[0], &rep);
    /* fleet a = (80*0.7+80*0.3... learned EWMA stays 80) and 20: mean 50;
     * n1 ratio 0.4: its b (unmeasured anywhere) = 30 * 0.4 */
    CHECK(models[1][1].prior_gen_tps > 11.99 && models[1][1].prior_gen_tps < 12.01, "n1 b %g",
          models[1][1].prior_gen_tps);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    test_eta_tracking();
    test_priors();
    return check_summary();
}
