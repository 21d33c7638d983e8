/*
 * scorer.h - picks the node with the lowest expected completion time.
 *
 * ## The cost model
 *
 * For a request for model M, every eligible node n gets a cost in seconds:
 *
 *     cost(n) = (wait + load + prompt + gen + rtt) / weight
 *
 * with, for the node-model pair (n, M):
 *
 *     gen_tps    = learned EWMA of eval tokens/s,        else inferred (below),
 *                  else default_gen_tps (30)
 *     prompt_tps = learned EWMA of prompt tokens/s,      else inferred,
 *                  else default_prompt_tps (500)
 *     P          = request prompt tokens (prompt bytes / 4, estimated by the caller)
 *     G          = num_predict if > 0, else typical_predict (256); 0 for embeddings
 *     f          = affinity_prompt_fraction (0.1) if n is the request's
 *                  affinity_node, else 1
 *     s          = P / prompt_tps + G / gen_tps           (service time alone)
 *     c          = node in_flight (plus the requests already waiting in the
 *                  daemon's queue for that node, req->extra_in_flight),
 *                  k = max_concurrent (slots, >= 1)
 *
 *     prompt = f * P / prompt_tps
 *     gen    = G / gen_tps * (1 + min(c, k - 1) / k)
 *     wait   = c >= k ? the (c - k + 1)-th soonest expected end among the
 *              requests running on n (see "Wait" below) : 0
 *     load   = 0 if M is loaded on n (/api/ps), else learned load_ms EWMA,
 *              else default_load_ms (5000), in seconds
 *     rtt    = probe round trip EWMA in seconds (0 when unknown)
 *     weight = node weight (> 0; 2 = twice as attractive)
 *
 * Why each term:
 *  - The client cares about when its answer is complete, so the unit is
 *    expected seconds to completion, and every effect (queueing, a cold load,
 *    a slow GPU, distance) is priced in that one unit instead of being
 *    weighed against the others with ad-hoc factors.
 *  - prompt and gen are separate because prefill and decode run at very
 *    different speeds (hundreds vs tens of tokens/s) and the mix differs per
 *    request: a long generation favours the node with the fastest decode, a
 *    short one favours the node that answers first (low rtt, no load).
 *  - Learned speeds are per node *and* model (a 70B and a 3B model on one
 *    GPU differ tenfold). A pair not yet measured on a node that has
 *    measured other models is inferred (the balancer keeps
 *    prior_gen_tps/prior_prompt_tps): the model's mean speed on the nodes
 *    that ran it (the default when none did), times this node's speed
 *    relative to the others on the models it ran. Without that, a slow
 *    node's first request for each of its models would be priced at the
 *    default speed and land there. A node never measured at all starts
 *    from the defaults, never from 0, so it is neither ignored nor flooded
 *    (and gets explored).
 *  - Contention: a node with free slots still shares one GPU between its
 *    running sequences. Batched decode is memory-bandwidth bound, so each
 *    extra sequence slows the others but far less than time-slicing would;
 *    (1 + c/k) says "a full batch halves per-stream decode speed", a
 *    deliberately moderate guess between free batching (factor 1) and
 *    serialisation (factor c + 1). It makes an idle node beat a half-busy
 *    one of equal speed, which spreads load before slots run out. Only
 *    min(c, k - 1) others can run beside us once we hold a slot, so the
 *    factor stops at (2k - 1) / k; the queue beyond that is priced by wait.
 *    Prefill is left out: it is compute bound and short, and a new request's
 *    prefill is scheduled promptly.
 *  - Wait: with all k slots busy, a request waits for (c - k + 1) slots to
 *    free up. The balancer records when each running attempt is expected to
 *    end (sol_scorer_service_s() at dispatch: its own num_predict, prompt
 *    and the node's learned speeds), so the wait is the (c - k + 1)-th
 *    soonest of those ends: a node whose running requests are nearly done
 *    is a short wait even when they were long. An attempt already past its
 *    expected end is assumed to need as long again as it has overrun. For
 *    positions beyond the tracked attempts (or none tracked), k slots free
 *    up about k times faster than one: s / k each, with this request's own
 *    s (without the affinity discount: our cached prefix does not shorten
 *    others' work) as the estimate of theirs.
 *  - Load: a cold model costs seconds to minutes (load_duration), usually
 *    more than the whole generation, so a node that has M loaded wins unless
 *    it is much busier or slower. The learned value comes from this node's
 *    own cold loads (disk and PCIe speed differ per machine).
 *  - Affinity: a node that served this conversation's prefix has it in its KV
 *    cache and prefills only the new tail; f = 0.1 assumes ~90% of the
 *    prompt is cached. It only discounts the prompt term, so the request
 *    goes back to that node unless it is worse by more than 0.9 * P /
 *    prompt_tps, i.e. much worse (busy, cold, slow).
 *  - rtt matters for tiny requests only; it is the probe's round trip.
 *  - weight is the operator's override: dividing the whole cost by it makes
 *    a weight-2 node chosen while it is up to twice as costly as another.
 *  - Lowest cost wins. Costs within 1e-9 (relative) are ties, broken
 *    uniformly at random (reservoir sampling with the scorer's PRNG), so
 *    identical idle nodes share load instead of the first one taking all.
 *
 * ## Eligibility
 *
 * A node is a candidate only when, checked in this order: it is not in the
 * request's `tried` set; its state is SOL_NODE_UP; its breaker allows a
 * request now (sol_breaker_allows()); it has M with `installed` set and
 * `gone` clear; and, when the request asks for free_slot_only, it has a
 * free slot (in_flight < max_concurrent). Other nodes are never chosen,
 * whatever their cost.
 *
 * ## Contract
 *
 * Pure computation: no I/O, no locks, no allocation, no global state. The
 * scorer reads the node table and writes nothing in it (the only state it
 * changes is its own PRNG). Cost per decision is O(nodes + models scanned);
 * a model is found by comparing 64-bit keys (sol_model_key()).
 */
#ifndef SOLLOL_SCORER_H
#define SOLLOL_SCORER_H

#include "base/node-t.h"
#include "base/node.h"

#include <stddef.h>
#include <stdint.h>

struct sol_scorer_conf {
    double default_gen_tps;          /* decode tokens/s of an unmeasured node-model (30) */
    double default_prompt_tps;       /* prefill tokens/s of an unmeasured node-model (500) */
    double default_load_ms;          /* cold load of an unmeasured node-model (5000) */
    double typical_predict;          /* tokens generated when num_predict is unset (256) */
    double affinity_prompt_fraction; /* share of the prompt time the affinity node pays (0.1) */
};

/* What the scorer needs to know of one request. */
struct sol_score_req {
    uint64_t model_key;              /* sol_model_key() of the canonical model name */
    double prompt_tokens;            /* estimate (prompt bytes / 4); embeddings: the inputs */
    long long num_predict;           /* options.num_predict; <= 0 = unset (typical length) */
    int embedding;                   /* nonzero: no generation, only the prompt term */
    int affinity_node;               /* index of the node holding this prefix, or -1 */
    const struct sol_tried *tried;   /* nodes already tried by this request; may be NULL */
    int free_slot_only;              /* nonzero: a node with in_flight >= max_concurrent is not a
                                        candidate (the admission queue waits for a slot) */
    const unsigned *extra_in_flight; /* per node index: requests already waiting for that
                                        node in the daemon's queue, counted as in flight
                                        when pricing the wait; may be NULL */
};

/* Why a node was not a candidate. */
enum sol_skip_reason {
    SOL_SKIP_TRIED = 0,     /* this request already tried it */
    SOL_SKIP_DOWN,          /* state SOL_NODE_DOWN */
    SOL_SKIP_MISCONFIGURED, /* state SOL_NODE_MISCONFIGURED (401/403) */
    SOL_SKIP_BREAKER,       /* breaker open, or half-open with its trial in flight */
    SOL_SKIP_NO_MODEL,      /* model not in the node's list, or not installed */
    SOL_SKIP_MODEL_GONE,    /* node answered 404 for it since the last /api/tags */
    SOL_SKIP_SATURATED,     /* free_slot_only, and every slot of the node is taken */
};

#define SOL_EXPLAIN_TOP     4 /* candidates kept in an explanation */
#define SOL_EXPLAIN_SKIPPED 8 /* skipped nodes kept in an explanation */

/* One candidate's cost terms, in seconds. total = (wait + load + prompt +
 * gen + rtt) / weight. */
struct sol_score_terms {
    const struct sol_node *node;
    double wait, load, prompt, gen, rtt, total;
};

/*
 * Why the scorer chose what it chose. Filled only when asked for (it costs a
 * few comparisons per candidate). Node pointers point into the table and are
 * valid as long as its nodes are.
 */
struct sol_score_explain {
    const struct sol_node *chosen; /* as returned by sol_scorer_pick(); NULL when none */
    unsigned candidates;           /* eligible nodes */
    unsigned n_top;                /* entries in top[] */
    /* The cheapest candidates in ascending total order, except that the
     * chosen node is always top[0] (on a tie it may not be the first). */
    struct sol_score_terms top[SOL_EXPLAIN_TOP];
    unsigned skipped_total; /* ineligible nodes, all of them */
    unsigned n_skipped;     /* entries in skipped[] (the first ones in table order) */
    struct {
        const struct sol_node *node;
        enum sol_skip_reason reason;
    } skipped[SOL_EXPLAIN_SKIPPED];
};

struct sol_scorer {
    struct sol_scorer_conf conf;
    uint64_t rng; /* tie-break PRNG state (splitmix64); any value is valid */
};

/* Fills `c` with the defaults given in struct sol_scorer_conf. */
void sol_scorer_conf_defaults(struct sol_scorer_conf *c);

/*
 * Initialises `s` with `conf` (NULL = defaults) and PRNG `seed` (tests pass
 * a fixed one; the daemon can pass the time). Fields of conf that are not
 * finite and positive (zero allowed for affinity_prompt_fraction, which is
 * also capped at 1) are replaced by their defaults, so no division by zero
 * can happen later. A caller that changes s->conf afterwards must keep those
 * rules.
 */
void sol_scorer_init(struct sol_scorer *s, const struct sol_scorer_conf *conf, uint64_t seed);

/*
 * Returns the eligible node with the lowest cost for `req` at `now_ms`, or
 * NULL when no node is eligible (see the top of this file). Ties are broken
 * uniformly at random. Does not change the table (the caller accounts the
 * dispatch: in_flight, sol_breaker_on_dispatch()). Never allocates. When
 * `explain` is not NULL it is overwritten with the reasoning, whatever the
 * result. A node with a weight that is not positive is treated as weight 1
 * and a max_concurrent of 0 as 1, rather than trusted to divide by.
 */
struct sol_node *sol_scorer_pick(struct sol_scorer *s, const struct sol_node_table *t,
                                 const struct sol_score_req *req, uint64_t now_ms,
                                 struct sol_score_explain *explain);

/*
 * The eligibility rules above for one node: 1 when it is a candidate for
 * req at now_ms, else 0 with the reason in *why (may be NULL). For the
 * comparison routing modes, which choose among the same candidates.
 */
int sol_scorer_eligible(const struct sol_node *n, const struct sol_score_req *req, uint64_t now_ms,
                        enum sol_skip_reason *why);

/*
 * Renders `e` as one line for an HTTP response header, e.g.
 *   gpu-a=1.234(wait=0,load=0,prompt=0.01,gen=1.2,rtt=0.002); gpu-b=...;
 *   skipped: gpu-c(down),gpu-d(tried)
 * The chosen node comes first (or "none" when nothing was chosen); numbers
 * are seconds with 4 significant digits; "+N" follows the skipped list when
 * more nodes were skipped than recorded. Node names are sanitised: bytes
 * outside printable ASCII and the characters space ; , = ( ) " ' \ become
 * '_', names are cut at 48 bytes, and a missing name is written "#<index>".
 * The result is therefore a valid header value. Never writes more than len
 * bytes: when the text does not fit, it ends after the last whole entry
 * that leaves room for " ..." and then " ..." (never half an entry). Always
 * NUL-terminates when len > 0. Returns the length written (excluding the
 * NUL), 0 when len is 0.
 */
int sol_scorer_explain_format(const struct sol_score_explain *e, char *buf, size_t len);

/* Short name of a skip reason: "tried", "down", "misconfigured",
 * "breaker-open", "no-model", "model-gone", "saturated". Static. */
const char *sol_skip_reason_name(enum sol_skip_reason r);

/*
 * The cost (seconds, as above) of running req on n at now_ms, or INFINITY
 * when n is not a candidate for req. Same numbers as sol_scorer_pick()
 * compares; for callers that weigh two specific nodes (waiting for a busy
 * node against starting now on a free one). No side effects.
 */
double sol_scorer_cost(const struct sol_scorer *s, const struct sol_node *n,
                       const struct sol_score_req *req, uint64_t now_ms);

/*
 * Expected seconds an attempt of req holds its slot on n once dispatched
 * there now: cold load if the model is not loaded, prompt (with the
 * affinity discount), and generation slowed by the requests already
 * running on n. The balancer adds it to the dispatch time to get the
 * attempt's expected end (struct sol_node running_eta). Needs no
 * eligibility; an unknown model is priced with the defaults.
 */
double sol_scorer_service_s(const struct sol_scorer *s, const struct sol_node *n,
                            const struct sol_score_req *req);

#endif
