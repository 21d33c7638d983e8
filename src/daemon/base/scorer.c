/*
 * scorer.c - expected-completion-time scoring (formula and reasons in
 * scorer.h).
 *
 * The decision loop is written for the common case: no explanation asked,
 * a handful of models per node. Per node it reads the node struct, scans
 * the model keys, and does a few divisions; ties draw from the PRNG only
 * when they happen.
 */
#include "base/scorer.h"

#include "base/breaker.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TIE_EPS      1e-9
#define NAME_MAX_OUT 48

void sol_scorer_conf_defaults(struct sol_scorer_conf *c)
{
    c->default_gen_tps = 30;
    c->default_prompt_tps = 500;
    c->default_load_ms = 5000;
    c->typical_predict = 256;
    c->affinity_prompt_fraction = 0.1;
}

static int positive(double v)
{
    return v > 0 && isfinite(v);
}

void sol_scorer_init(struct sol_scorer *s, const struct sol_scorer_conf *conf, uint64_t seed)
{
    struct sol_scorer_conf d;
    sol_scorer_conf_defaults(&d);
    s->conf = d;
    if (conf) {
        if (positive(conf->default_gen_tps))
            s->conf.default_gen_tps = conf->default_gen_tps;
        if (positive(conf->default_prompt_tps))
            s->conf.default_prompt_tps = conf->default_prompt_tps;
        if (positive(conf->default_load_ms))
            s->conf.default_load_ms = conf->default_load_ms;
        if (positive(conf->typical_predict))
            s->conf.typical_predict = conf->typical_predict;
        double f = conf->affinity_prompt_fraction;
        if (f >= 0 && isfinite(f))
            s->conf.affinity_prompt_fraction = f > 1 ? 1 : f;
    }
    s->rng = seed;
}

/* splitmix64: any state is valid, one add and three multiplies per draw. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, k) for k < 2^32 (multiply-shift; bias below 2^-32). */
static unsigned rng_below(uint64_t *state, unsigned k)
{
    return (unsigned)(((rng_next(state) >> 32) * (uint64_t)k) >> 32);
}

static int tried_has(const struct sol_tried *t, unsigned index)
{
    unsigned c = t->count < SOL_MAX_ATTEMPTS ? t->count : SOL_MAX_ATTEMPTS;
    for (unsigned i = 0; i < c; i++)
        if (t->index[i] == index)
            return 1;
    return 0;
}

/* Per-request constants, hoisted out of the node loop. */
struct req_consts {
    double P; /* prompt tokens */
    double G; /* tokens to generate */
};

static void req_consts_init(struct req_consts *k, const struct sol_scorer_conf *cf,
                            const struct sol_score_req *req)
{
    k->P = req->prompt_tokens > 0 ? req->prompt_tokens : 0;
    if (k->P > 1e15) /* an infinite estimate would turn 0 * inf into NaN */
        k->P = 1e15;
    k->G = 0;
    if (!req->embedding)
        k->G = req->num_predict > 0 ? (double)req->num_predict : cf->typical_predict;
}

/* A learned speed, else the one inferred from other pairs, else the default. */
static inline double speed(double learned, double prior, double dflt)
{
    return learned > 0 ? learned : prior > 0 ? prior : dflt;
}

#define ETA_SCAN_MAX 64 /* running ends looked at per busy node */

/*
 * Seconds until the slot this request would get on a full node frees:
 * the (queued)-th soonest end among the attempts running there. An
 * attempt already past its expected end is assumed to run on for as long
 * as it has overrun (a long answer tends to be longer still), rather than
 * to end at once. Queued positions beyond the tracked attempts are priced
 * as before, svc / k each: the whole node turns over once per service
 * time. With nothing tracked, that rule alone.
 */
static double busy_wait(const struct sol_node *n, unsigned queued, double svc, double k,
                        uint64_t now_ms)
{
    unsigned cnt = n->n_running < ETA_SCAN_MAX ? n->n_running : ETA_SCAN_MAX;
    if (cnt == 0)
        return queued * svc / k;
    double rem[ETA_SCAN_MAX] = {0}; /* (filled below; cppcheck cannot see it) */
    for (unsigned i = 0; i < cnt; i++) {
        uint64_t e = n->running_eta[i];
        double r = e >= now_ms ? (double)(e - now_ms) : (double)(now_ms - e);
        /* insertion sort: cnt is the node's slot count, a handful */
        unsigned j = i;
        while (j > 0 && rem[j - 1] > r) {
            rem[j] = rem[j - 1];
            j--;
        }
        rem[j] = r;
    }
    if (queued <= cnt)
        return rem[queued - 1] * 1e-3;
    return rem[cnt - 1] * 1e-3 + (queued - cnt) * svc / k;
}

/*
 * The terms of scorer.h for one eligible node, rearranged so the common
 * case costs one division (by k * w) besides the two for the speeds:
 *   cost = (gen_s * (k + share) + k * (wait + load + prompt + rtt)) / (k * w)
 * with share = min(c, k - 1). (A fully branch-free loop - bit-mask
 * selects, every node costed, ineligible ones as +inf - measured about
 * twice as slow: the extra work outweighs the mispredictions it saves.)
 */
static inline double node_cost(const struct sol_scorer_conf *cf, const struct sol_node *n,
                               const struct sol_node_model *m, const struct sol_score_req *req,
                               const struct req_consts *rc, uint64_t now_ms,
                               struct sol_score_terms *terms)
{
    double ptps = speed(m->prompt_tps, m->prior_prompt_tps, cf->default_prompt_tps);
    double gtps = speed(m->gen_tps, m->prior_gen_tps, cf->default_gen_tps);
    double prompt_s = rc->P / ptps;
    double gen_s = rc->G / gtps;
    unsigned ki = n->max_concurrent ? n->max_concurrent : 1;
    unsigned ci = n->in_flight + (req->extra_in_flight ? req->extra_in_flight[n->index] : 0);
    double k = (double)ki;
    double share = (double)(ci < ki ? ci : ki - 1);
    /* Own service time without the affinity discount: the requests ahead
     * are others', our cached prefix does not shorten them. */
    double wait = ci >= ki ? busy_wait(n, ci - ki + 1, prompt_s + gen_s, k, now_ms) : 0;
    double prompt =
        prompt_s * ((int)n->index == req->affinity_node ? cf->affinity_prompt_fraction : 1.0);
    double load_ms = m->load_ms > 0 ? m->load_ms : cf->default_load_ms;
    double load = m->loaded ? 0 : load_ms * 1e-3;
    double rtt = n->rtt_ms > 0 ? n->rtt_ms * 1e-3 : 0;
    double w = n->weight > 0 ? n->weight : 1.0;
    double cost = (gen_s * (k + share) + k * (wait + load + prompt + rtt)) / (k * w);
    if (terms) {
        struct sol_score_terms t = {n, wait, load, prompt, gen_s * (k + share) / k, rtt, cost};
        *terms = t;
    }
    return cost;
}

/* Keeps top[] sorted by total, at most SOL_EXPLAIN_TOP entries. */
static void top_insert(struct sol_score_explain *e, const struct sol_score_terms *t)
{
    unsigned n = e->n_top;
    if (n == SOL_EXPLAIN_TOP && !(t->total < e->top[n - 1].total))
        return;
    unsigned j = n < SOL_EXPLAIN_TOP ? n : SOL_EXPLAIN_TOP - 1;
    while (j > 0 && t->total < e->top[j - 1].total) {
        e->top[j] = e->top[j - 1];
        j--;
    }
    e->top[j] = *t;
    if (n < SOL_EXPLAIN_TOP)
        e->n_top++;
}

/* Puts the chosen node first: on a tie it may sit later in top[], or (with
 * more ties than slots) not be there at all. */
static void top_put_chosen_first(struct sol_score_explain *e, const struct sol_score_terms *c)
{
    unsigned j = 0;
    while (j < e->n_top && e->top[j].node != c->node)
        j++;
    if (j == e->n_top) {
        if (e->n_top < SOL_EXPLAIN_TOP)
            e->n_top++;
        j = e->n_top - 1;
    }
    memmove(&e->top[1], &e->top[0], j * sizeof e->top[0]);
    e->top[0] = *c;
}

static void skip(struct sol_score_explain *e, const struct sol_node *n, enum sol_skip_reason r)
{
    if (e->n_skipped < SOL_EXPLAIN_SKIPPED) {
        e->skipped[e->n_skipped].node = n;
        e->skipped[e->n_skipped].reason = r;
        e->n_skipped++;
    }
    e->skipped_total++;
}

/* The eligibility rules of scorer.h after the tried check, in order.
 * Returns 1 with *why set when the node is not a candidate; else 0 with
 * *model set to its entry for the model. */
static inline int ineligible(const struct sol_node *n, uint64_t model_key, int free_slot_only,
                             uint64_t now_ms, enum sol_skip_reason *why,
                             const struct sol_node_model **model)
{
    const struct sol_node_model *m;
    if (n->state != SOL_NODE_UP) {
        *why = n->state == SOL_NODE_DOWN ? SOL_SKIP_DOWN : SOL_SKIP_MISCONFIGURED;
    } else if (n->breaker.state != SOL_BREAKER_CLOSED && !sol_breaker_allows(&n->breaker, now_ms)) {
        /* (closed is the common case: no call for it) */
        *why = SOL_SKIP_BREAKER;
    } else if (!(m = sol_node_find_model(n, model_key)) || !m->installed) {
        *why = SOL_SKIP_NO_MODEL;
    } else if (m->gone) {
        *why = SOL_SKIP_MODEL_GONE;
    } else if (free_slot_only &&
               (n->held || n->in_flight >= (n->max_concurrent ? n->max_concurrent : 1))) {
        /* The admission queue holds requests rather than overfill a node. */
        *why = SOL_SKIP_SATURATED;
    } else {
        *model = m;
        return 0;
    }
    return 1;
}

int sol_scorer_eligible(const struct sol_node *n, const struct sol_score_req *req, uint64_t now_ms,
                        enum sol_skip_reason *why)
{
    enum sol_skip_reason r;
    const struct sol_node_model *m;
    if (req->tried && tried_has(req->tried, n->index))
        r = SOL_SKIP_TRIED;
    else if (!ineligible(n, req->model_key, req->free_slot_only, now_ms, &r, &m))
        return 1;
    if (why)
        *why = r;
    return 0;
}

struct sol_node *sol_scorer_pick(struct sol_scorer *s, const struct sol_node_table *t,
                                 const struct sol_score_req *req, uint64_t now_ms,
                                 struct sol_score_explain *explain)
{
    const struct sol_scorer_conf *cf = &s->conf;
    struct req_consts rc;
    req_consts_init(&rc, cf, req);
    /* A one-word filter over the tried set: most nodes are ruled out
     * without scanning it. */
    const struct sol_tried *tried = req->tried && req->tried->count ? req->tried : NULL;
    uint64_t tried_mask = 0;
    for (unsigned j = 0; tried && j < tried->count && j < SOL_MAX_ATTEMPTS; j++)
        tried_mask |= 1ull << (tried->index[j] & 63);

    if (explain) {
        explain->chosen = NULL;
        explain->candidates = 0;
        explain->n_top = 0;
        explain->skipped_total = 0;
        explain->n_skipped = 0;
    }

    struct sol_node *best = NULL;
    double best_cost = 0;
    unsigned ties = 0;
    struct sol_score_terms best_terms = {0};

    for (unsigned i = 0; i < t->count; i++) {
        struct sol_node *n = t->nodes[i];
        const struct sol_node_model *m = NULL;
        enum sol_skip_reason why;

        if ((tried_mask >> (n->index & 63) & 1) && tried_has(tried, n->index))
            why = SOL_SKIP_TRIED;
        else if (!ineligible(n, req->model_key, req->free_slot_only, now_ms, &why, &m))
            goto eligible;
        if (explain)
            skip(explain, n, why);
        continue;

    eligible:;
        struct sol_score_terms tt;
        double cost = node_cost(cf, n, m, req, &rc, now_ms, explain ? &tt : NULL);

        /* Relative tolerance from the smaller cost, so an infinite best
         * never swallows a finite candidate as a "tie". */
        int take;
        if (!best) {
            take = 1;
            ties = 1;
        } else {
            double tol = TIE_EPS * (cost < best_cost ? cost : best_cost);
            if (cost < best_cost - tol) {
                take = 1;
                ties = 1;
            } else if (cost <= best_cost + tol) {
                /* Reservoir sampling: each of the `ties` equals ends up
                 * chosen with probability 1/ties. */
                ties++;
                take = rng_below(&s->rng, ties) == 0;
            } else {
                take = 0;
            }
        }
        if (take && ties == 1)
            best_cost = cost;
        if (take)
            best = n;

        if (explain) {
            explain->candidates++;
            top_insert(explain, &tt);
            if (take)
                best_terms = tt;
        }
    }

    if (explain && best) {
        explain->chosen = best;
        top_put_chosen_first(explain, &best_terms);
    }
    return best;
}

double sol_scorer_cost(const struct sol_scorer *s, const struct sol_node *n,
                       const struct sol_score_req *req, uint64_t now_ms)
{
    const struct sol_node_model *m;
    enum sol_skip_reason why;
    if ((req->tried && tried_has(req->tried, n->index)) ||
        ineligible(n, req->model_key, req->free_slot_only, now_ms, &why, &m))
        return INFINITY;
    struct req_consts rc;
    req_consts_init(&rc, &s->conf, req);
    return node_cost(&s->conf, n, m, req, &rc, now_ms, NULL);
}

double sol_scorer_service_s(const struct sol_scorer *s, const struct sol_node *n,
                            const struct sol_score_req *req)
{
    const struct sol_scorer_conf *cf = &s->conf;
    const struct sol_node_model *m = sol_node_find_model(n, req->model_key);
    struct req_consts rc;
    req_consts_init(&rc, cf, req);
    double ptps = m ? speed(m->prompt_tps, m->prior_prompt_tps, cf->default_prompt_tps)
                    : cf->default_prompt_tps;
    double gtps =
        m ? speed(m->gen_tps, m->prior_gen_tps, cf->default_gen_tps) : cf->default_gen_tps;
    double load_ms = m && m->load_ms > 0 ? m->load_ms : cf->default_load_ms;
    unsigned ki = n->max_concurrent ? n->max_concurrent : 1;
    unsigned ci = n->in_flight;
    double share = (double)(ci < ki ? ci : ki - 1);
    double prompt =
        rc.P / ptps * ((int)n->index == req->affinity_node ? cf->affinity_prompt_fraction : 1.0);
    double load = m && m->loaded ? 0 : load_ms * 1e-3;
    return load + prompt + rc.G / gtps * (1.0 + share / (double)ki);
}

const char *sol_skip_reason_name(enum sol_skip_reason r)
{
    switch (r) {
    case SOL_SKIP_TRIED:
        return "tried";
    case SOL_SKIP_DOWN:
        return "down";
    case SOL_SKIP_MISCONFIGURED:
        return "misconfigured";
    case SOL_SKIP_BREAKER:
        return "breaker-open";
    case SOL_SKIP_NO_MODEL:
        return "no-model";
    case SOL_SKIP_MODEL_GONE:
        return "model-gone";
    case SOL_SKIP_SATURATED:
        return "saturated";
    }
    return "unknown";
}

/* --- explanation rendering ----------------------------------------------- */

#define ELLIPSIS " ..."

struct out {
    char *buf;
    size_t len, cap;
    int full;         /* an entry did not fit: nothing more is written */
    unsigned n_marks; /* entry boundaries, to back off to on overflow */
    size_t marks[SOL_EXPLAIN_TOP + SOL_EXPLAIN_SKIPPED + 2];
};

/* Appends a whole entry or nothing. On the first entry that does not fit,
 * backs off to the last entry boundary where ELLIPSIS still fits and ends
 * there, so a cut is always visible and never splits an entry. */
static void out_put(struct out *o, const char *s, size_t n)
{
    if (o->full)
        return;
    if (o->len + n < o->cap) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
        o->buf[o->len] = '\0';
        o->marks[o->n_marks++] = o->len;
        return;
    }
    o->full = 1;
    size_t at = 0;
    for (unsigned i = o->n_marks; i-- > 0;) {
        if (o->marks[i] + sizeof ELLIPSIS <= o->cap) {
            at = o->marks[i];
            break;
        }
    }
    o->len = at;
    if (at + sizeof ELLIPSIS <= o->cap) {
        memcpy(o->buf + at, ELLIPSIS, sizeof ELLIPSIS);
        o->len += sizeof ELLIPSIS - 1;
    } else {
        o->buf[at] = '\0';
    }
}

/* Writes a sanitised node name into p (at least NAME_MAX_OUT + 12 bytes);
 * returns its length. */
static size_t put_name(char *p, const struct sol_node *n)
{
    const unsigned char *name = (const unsigned char *)n->name;
    if (!name || !*name)
        return (size_t)sprintf(p, "#%u", n->index);
    size_t k = 0;
    for (; k < NAME_MAX_OUT && name[k]; k++) {
        unsigned char ch = name[k];
        int bad = ch <= 0x20 || ch >= 0x7f || strchr(";,=()\"'\\", ch) != NULL;
        p[k] = bad ? '_' : (char)ch;
    }
    return k;
}

int sol_scorer_explain_format(const struct sol_score_explain *e, char *buf, size_t len)
{
    if (!buf || len == 0)
        return 0;
    buf[0] = '\0';
    struct out o = {.buf = buf, .cap = len};
    char piece[NAME_MAX_OUT + 200];

    if (!e || e->n_top == 0) {
        out_put(&o, "none", 4);
    }
    for (unsigned i = 0; e && i < e->n_top; i++) {
        const struct sol_score_terms *t = &e->top[i];
        size_t k = 0;
        if (i > 0) {
            piece[k++] = ';';
            piece[k++] = ' ';
        }
        k += put_name(piece + k, t->node);
        k += (size_t)snprintf(piece + k, sizeof piece - k,
                              "=%.4g(wait=%.4g,load=%.4g,prompt=%.4g,gen=%.4g,rtt=%.4g)", t->total,
                              t->wait, t->load, t->prompt, t->gen, t->rtt);
        out_put(&o, piece, k < sizeof piece ? k : sizeof piece - 1);
    }
    for (unsigned i = 0; e && i < e->n_skipped; i++) {
        size_t k = (size_t)sprintf(piece, "%s", i == 0 ? "; skipped: " : ",");
        k += put_name(piece + k, e->skipped[i].node);
        k += (size_t)snprintf(piece + k, sizeof piece - k, "(%s)",
                              sol_skip_reason_name(e->skipped[i].reason));
        out_put(&o, piece, k);
    }
    if (e && e->skipped_total > e->n_skipped) {
        int k = snprintf(piece, sizeof piece, "%s+%u",
                         e->n_skipped ? " " : "; skipped: ", e->skipped_total - e->n_skipped);
        out_put(&o, piece, (size_t)k);
    }
    return (int)o.len;
}
