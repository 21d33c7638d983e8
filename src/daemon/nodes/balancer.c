/*
 * balancer.c - node choice per routing mode, and passive health (see
 * balancer.h). The choice itself is the scorer's; this file only adds the
 * accounting around it.
 */
#include "nodes/balancer.h"

#include "base/breaker.h"
#include "base/config.h"
#include "sollol/log.h"

#include <stdlib.h>
#include <string.h>

#define EWMA_ALPHA 0.3
/* A load_duration above this means the model was really loaded (a warm
 * request still reports a few ms). */
#define COLD_LOAD_NS 50000000ull

void sol_balancer_init(struct sol_balancer *b, struct sol_node_table *table, int mode,
                       const struct sol_scorer_conf *sc, const struct sol_breaker_conf *bc,
                       uint64_t (*now_ms)(void *), void *clock_ud)
{
    b->table = table;
    b->mode = mode;
    b->rr_next = 0;
    b->now_ms = now_ms;
    b->clock_ud = clock_ud;
    b->on_model_gone = NULL;
    b->gone_ud = NULL;
    b->on_slot_freed = NULL;
    b->slot_ud = NULL;
    sol_scorer_init(&b->scorer, sc, now_ms(clock_ud) ^ (uint64_t)(uintptr_t)b);
    if (bc)
        b->breaker = *bc;
    else
        sol_breaker_conf_defaults(&b->breaker);
}

int sol_tried_has(const struct sol_tried *t, unsigned index)
{
    for (unsigned i = 0; t && i < t->count; i++)
        if (t->index[i] == index)
            return 1;
    return 0;
}

/* The comparison modes choose among the scorer's candidates too, so they
 * differ from "cost" only in the choice, never in safety. */
static struct sol_node *pick_simple(struct sol_balancer *b, const struct sol_score_req *req,
                                    uint64_t now)
{
    unsigned count = b->table->count;
    struct sol_node *best = NULL;
    for (unsigned step = 0; step < count; step++) {
        unsigned i = (b->rr_next + step) % count;
        struct sol_node *n = b->table->nodes[i];
        if (!sol_scorer_eligible(n, req, now, NULL))
            continue;
        if (b->mode == SOL_ROUTING_ROUND_ROBIN) {
            b->rr_next = (i + 1) % count;
            return n;
        }
        if (!best || n->in_flight < best->in_flight)
            best = n;
    }
    if (best)
        b->rr_next = (best->index + 1) % count;
    return best;
}

/* Records the attempt's expected end among the node's running ones. Out
 * of memory only costs precision: the attempt goes untracked (*eta_ms = 0)
 * and the scorer prices the node's wait by its slot count alone. */
static void track_eta(struct sol_balancer *b, struct sol_node *n, const struct sol_score_req *req,
                      uint64_t now, uint64_t *eta_ms)
{
    *eta_ms = 0;
    if (n->n_running == n->cap_running) {
        unsigned cap = n->cap_running ? n->cap_running * 2 : 8;
        uint64_t *v = realloc(n->running_eta, cap * sizeof *v);
        if (!v)
            return;
        n->running_eta = v;
        n->cap_running = cap;
    }
    double s = sol_scorer_service_s(&b->scorer, n, req);
    uint64_t eta = now + (uint64_t)(s > 0 && s < 1e9 ? s * 1e3 : 0) + 1; /* never 0 */
    n->running_eta[n->n_running++] = eta;
    *eta_ms = eta;
}

static void untrack_eta(struct sol_node *n, uint64_t eta)
{
    for (unsigned i = 0; i < n->n_running; i++)
        if (n->running_eta[i] == eta) {
            n->running_eta[i] = n->running_eta[--n->n_running];
            return;
        }
}

static struct sol_node *dispatch(struct sol_balancer *b, struct sol_node *n,
                                 const struct sol_score_req *req, uint64_t now, uint64_t *eta_ms)
{
    if (eta_ms)
        track_eta(b, n, req, now, eta_ms);
    n->in_flight++;
    n->requests_total++;
    struct sol_node_model *m = sol_node_find_model(n, req->model_key);
    if (m)
        m->in_flight++;
    sol_breaker_on_dispatch(&n->breaker, now);
    return n;
}

struct sol_node *sol_balancer_get(struct sol_balancer *b, const struct sol_score_req *req,
                                  struct sol_score_explain *explain, uint64_t *eta_ms)
{
    uint64_t now = b->now_ms(b->clock_ud);
    struct sol_node *n = b->mode == SOL_ROUTING_COST
                             ? sol_scorer_pick(&b->scorer, b->table, req, now, explain)
                             : pick_simple(b, req, now);
    return n ? dispatch(b, n, req, now, eta_ms) : NULL;
}

struct sol_node *sol_balancer_get_node(struct sol_balancer *b, struct sol_node *n,
                                       const struct sol_score_req *req, uint64_t *eta_ms)
{
    if (n->state != SOL_NODE_UP)
        return NULL;
    return dispatch(b, n, req, b->now_ms(b->clock_ud), eta_ms);
}

int sol_balancer_has_alternative(const struct sol_balancer *b, const struct sol_score_req *req)
{
    uint64_t now = b->now_ms(b->clock_ud);
    for (unsigned i = 0; i < b->table->count; i++)
        if (sol_scorer_eligible(b->table->nodes[i], req, now, NULL))
            return 1;
    return 0;
}

static void ewma(double *v, double sample)
{
    *v = *v > 0 ? *v + EWMA_ALPHA * (sample - *v) : sample;
}

static void learn(struct sol_node_model *m, const struct sol_attempt_report *r)
{
    if (r->eval_count > 0 && r->eval_duration_ns > 0)
        ewma(&m->gen_tps, (double)r->eval_count * 1e9 / (double)r->eval_duration_ns);
    /* Ollama counts cached prompt tokens in prompt_eval_count but not in
     * the duration: learning from a cache hit would inflate the speed. */
    if (r->prompt_eval_count > 0 && r->prompt_eval_duration_ns > 0 && !r->prompt_cached)
        ewma(&m->prompt_tps,
             (double)r->prompt_eval_count * 1e9 / (double)r->prompt_eval_duration_ns);
    if (r->load_duration_ns > COLD_LOAD_NS) {
        ewma(&m->load_ms, (double)r->load_duration_ns / 1e6);
        m->loaded = 1; /* it is now, whatever the last /api/ps said */
    }
    if (r->ttfb_ms > 0)
        ewma(&m->ttfb_ms, r->ttfb_ms);
    m->samples++;
}

#define PRIOR_MODELS_MAX 128 /* distinct models looked at when inferring speeds */

struct fleet_speed {
    uint64_t key;
    double gen_sum, prompt_sum;
    unsigned gen_n, prompt_n;
};

static struct fleet_speed *fleet_find(struct fleet_speed *f, unsigned *nf, uint64_t key, int add)
{
    for (unsigned i = 0; i < *nf; i++)
        if (f[i].key == key)
            return &f[i];
    if (!add || *nf == PRIOR_MODELS_MAX)
        return NULL;
    struct fleet_speed *e = &f[(*nf)++];
    memset(e, 0, sizeof *e);
    e->key = key;
    return e;
}

/*
 * Infers the speeds of node-model pairs that have no sample yet (see
 * scorer.h): prior = model's mean speed over the nodes that measured it
 * (the default when none did) x this node's mean ratio to those means on
 * the models it measured. A node that measured nothing gets no prior. Runs
 * after each learned sample: O(entries x distinct models), a few thousand
 * comparisons for a large table, once per finished request.
 */
static void update_priors(struct sol_balancer *b)
{
    struct fleet_speed fleet[PRIOR_MODELS_MAX];
    unsigned nf = 0;
    const struct sol_node_table *t = b->table;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        for (unsigned j = 0; j < n->n_models; j++) {
            const struct sol_node_model *m = &n->models[j];
            if (!(m->gen_tps > 0) && !(m->prompt_tps > 0))
                continue;
            struct fleet_speed *f = fleet_find(fleet, &nf, m->key, 1);
            if (!f)
                continue;
            if (m->gen_tps > 0) {
                f->gen_sum += m->gen_tps;
                f->gen_n++;
            }
            if (m->prompt_tps > 0) {
                f->prompt_sum += m->prompt_tps;
                f->prompt_n++;
            }
        }
    }
    for (unsigned i = 0; i < t->count; i++) {
        struct sol_node *n = t->nodes[i];
        double gen_rel = 0, prompt_rel = 0;
        unsigned gen_k = 0, prompt_k = 0;
        for (unsigned j = 0; j < n->n_models; j++) {
            const struct sol_node_model *m = &n->models[j];
            const struct fleet_speed *f = fleet_find(fleet, &nf, m->key, 0);
            if (!f)
                continue;
            if (m->gen_tps > 0) {
                gen_rel += m->gen_tps / (f->gen_sum / f->gen_n);
                gen_k++;
            }
            if (m->prompt_tps > 0) {
                prompt_rel += m->prompt_tps / (f->prompt_sum / f->prompt_n);
                prompt_k++;
            }
        }
        gen_rel = gen_k ? gen_rel / gen_k : 0;
        prompt_rel = prompt_k ? prompt_rel / prompt_k : 0;
        for (unsigned j = 0; j < n->n_models; j++) {
            struct sol_node_model *m = &n->models[j];
            const struct fleet_speed *f = fleet_find(fleet, &nf, m->key, 0);
            double g = f && f->gen_n ? f->gen_sum / f->gen_n : b->scorer.conf.default_gen_tps;
            double p =
                f && f->prompt_n ? f->prompt_sum / f->prompt_n : b->scorer.conf.default_prompt_tps;
            /* A node with no sample of its own keeps the defaults: they are
             * what gets a new node explored at all. */
            m->prior_gen_tps = gen_k ? g * gen_rel : 0;
            m->prior_prompt_tps = prompt_k ? p * prompt_rel : 0;
        }
    }
}

void sol_balancer_put(struct sol_balancer *b, struct sol_node *n,
                      const struct sol_attempt_report *rep)
{
    uint64_t now = b->now_ms(b->clock_ud);
    struct sol_node_model *m = rep->model_key ? sol_node_find_model(n, rep->model_key) : NULL;
    n->in_flight--;
    if (rep->eta_ms)
        untrack_eta(n, rep->eta_ms);
    if (m && m->in_flight)
        m->in_flight--;
    if (b->on_slot_freed)
        b->on_slot_freed(b->slot_ud);
    switch (rep->result) {
    case SOL_ATTEMPT_OK:
        if (sol_breaker_on_success(&n->breaker, &b->breaker, now))
            SOL_INFO("node %s: circuit breaker %s", n->name,
                     sol_breaker_state_name(n->breaker.state));
        if (m) {
            learn(m, rep);
            update_priors(b);
        }
        break;
    case SOL_ATTEMPT_CANCELLED:
        sol_breaker_on_cancel(&n->breaker, now);
        break;
    case SOL_ATTEMPT_AUTH_REJECTED:
        n->failures_total++;
        sol_breaker_on_cancel(&n->breaker, now);
        if (n->state != SOL_NODE_MISCONFIGURED)
            SOL_ERROR("node %s rejected a request (401/403): check the headers configured for "
                      "it; not routable until its probes pass",
                      n->name);
        n->state = SOL_NODE_MISCONFIGURED;
        break;
    case SOL_ATTEMPT_MODEL_MISSING:
        /* Not the node's fault as a server: it just no longer has the
         * model. Stop sending it there and re-read what it has. */
        sol_breaker_on_cancel(&n->breaker, now);
        if (m && !m->gone) {
            m->gone = 1;
            SOL_WARN("node %s no longer has model %s", n->name, m->name);
            if (b->on_model_gone)
                b->on_model_gone(b->gone_ud, n);
        }
        break;
    default:
        n->failures_total++;
        if (sol_breaker_on_failure(&n->breaker, &b->breaker, now))
            SOL_WARN("node %s: circuit breaker %s (cooldown %llu ms)", n->name,
                     sol_breaker_state_name(n->breaker.state),
                     (unsigned long long)n->breaker.cooldown_ms);
        break;
    }
}
