/*
 * queue.h - the admission queue: requests waiting for a node slot.
 *
 * A node never gets more requests in flight than its slots
 * (node->max_concurrent). A request that finds no suitable free slot waits
 * here, in the daemon, so that it goes to whichever suitable node frees a
 * slot first. This module is the queue's data structure and policy only:
 * no I/O, no libuv, no logging, no allocation after sol_queue_init(). Time
 * is passed in (monotonic milliseconds, e.g. uv_now(); tests use a fake
 * clock).
 *
 * ## The order
 *
 * Entries are grouped into *flows*: one flow per (client_key, priority)
 * pair that has entries waiting. Inside a flow entries are FIFO. Each flow
 * has a *turn time* `since`: the time it was last served (an entry of it
 * dispatched), or the time it was created (its first entry pushed while it
 * had none) if it has not been served since. A flow with no entries left
 * is forgotten: its next entry creates it anew, with since = now. A client
 * waiting at two priorities has two flows, with a turn in each.
 *
 * The effective priority of a flow at time now is, with A = aging_ms:
 *
 *     eff = priority + (now - since) / A          (a real number, no rounding)
 *
 * i.e. every A milliseconds a flow waits for its turn are worth one
 * priority level. Dispatch serves the flow with the highest eff; among
 * flows of equal eff the higher base priority; among those the flow whose
 * turn began first (smaller `since`, then earlier event: see `tick`
 * below). The served flow's first entry goes (with a predicate: its first
 * entry the predicate accepts) and the flow's turn restarts at now.
 *
 * Equivalently, since `now` cancels out of every comparison, each flow
 * has a fixed key
 *
 *     key = since + (10 - priority) * A       (smaller is better)
 *
 * compared as (key ascending, priority descending, tick ascending), where
 * tick orders the events that set `since` (creations and dispatches) as
 * they happened. So **the order of waiting entries does not change while
 * time passes**; only push, dispatch and removal change it.
 *
 * With aging_ms = 0 aging is off: flows compare by (priority descending,
 * tick ascending), i.e. strict priority, round-robin inside a priority. A
 * low priority can then starve.
 *
 * What this gives:
 *  - Priority: a higher priority goes first, unless a lower one has waited
 *    for its turn longer by more than A per level of difference: a flow at
 *    priority p that has waited w beats one at p' > p that has waited w'
 *    iff w - w' > (p' - p) * A (on equality the higher priority wins).
 *    E.g. A = 10 s: a priority-1 request waiting alone beats fresh
 *    priority-9 requests once it has waited more than 80 s.
 *  - No starvation: a flow's key is fixed until it is served, while every
 *    flow created or served later gets a key >= that later time. Once
 *    now > key, only the (at most max_length) flows with smaller keys can
 *    go before it, each once. (With a predicate: among the entries that
 *    the freed nodes can run.)
 *  - Fairness inside a priority: round-robin over clients. The client
 *    served least recently goes first; a client that starts waiting joins
 *    at the end of the round. So 1,000 requests from client A do not push
 *    client B's single request back: B waits for at most one request of
 *    each client ahead of it in the round (here: one of A's).
 *  - Arrival order: at one priority, single requests from different
 *    clients go in arrival order (each new flow joins at the end); requests
 *    of one client go in arrival order (FIFO).
 *
 * Why aging counts a flow's wait for its turn and not each entry's age:
 * with per-entry aging, a burst of 1,000 requests from one client that is
 * older than another client's request by more than A would sit a whole
 * level above it and be served entirely first, i.e. FIFO across aging
 * periods, defeating fairness. For a client with one request waiting (the
 * common case) both are the same: since = the entry's enqueue time. A
 * client's second request at the same priority starts aging when its first
 * one is served.
 *
 * ## Wiring (for the request lifecycle)
 *
 * One loop serves every event that can let a request start (a request
 * arrived, a slot freed, a node came up or its breaker closed):
 *
 *     while ((e = sol_queue_peek_for(q, any_free_node_can_run, d))) {
 *         pick a node with a free slot for e (the scorer);
 *         sol_queue_dispatch(q, e, now);   X-Sollol-Queue-Ms = now - e->enqueued_ms
 *         start e;
 *     }
 *
 * where any_free_node_can_run(e) says whether some node with in_flight <
 * max_concurrent is eligible for e's request (sol_scorer_eligible() and
 * the request's own conditions, e.g. its tried set). peek then dispatch
 * (rather than pop_for()) keeps e queued, in its place, if the caller
 * finds it cannot start it after all. When only node N changed,
 * sol_queue_pop_for(q, now, N_can_run, N) in a loop while N has a free slot
 * is the cheaper form ("the best waiting request N can serve"); the scorer
 * may still send e to another free node.
 *
 *  - Arrival: answer 404/503 first when no node could ever serve the
 *    model; else sol_queue_entry_init(), sol_queue_push() (-1: answer 503
 *    "queue full" with Retry-After), then the loop above. Pushing first
 *    keeps one order for everybody: a new request never overtakes a better
 *    waiting one that the same free slot could run. (It costs nothing
 *    noticeable and counts the request in enqueued/dispatched_total.)
 *  - Timer: sol_queue_expire(q, now, cb, ud) for 503 "timed out waiting
 *    for a node" on each expired entry, then re-arm at
 *    sol_queue_next_expiry() (SOL_QUEUE_NEVER: stop the timer).
 *  - Client gone, or request freed: sol_queue_remove(q, e); a no-op when e
 *    is not queued, so the free path may call it unconditionally.
 *  - Shutdown: while ((e = sol_queue_oldest(q))) { sol_queue_remove(q, e);
 *    answer e; } then sol_queue_destroy().
 *
 * ## Complexity (n entries waiting, F flows <= n, P = 10 priorities)
 *
 *  push O(1) expected (one hash lookup); remove, and dispatch of a given
 *  entry, O(1) expected; expire O(1 + expired); next_expiry, oldest, length
 *  O(1); stats O(P).
 *  peek_for/pop_for without a predicate: O(P). With a predicate: flows are
 *  visited in turn order (a P-way merge of the per-priority rounds) and,
 *  inside each, entries FIFO, until the predicate accepts one:
 *  O(P * V + C), V flows visited, C predicate calls. When the best flow's
 *  first entry is accepted (the common case): O(P) and one call. The price
 *  is paid for entries the freed node cannot run that sit ahead in the
 *  order: they are asked again at every such pop (e.g. a backlog for a
 *  model only busy nodes have). Worst case O(P * F + n): nothing accepted,
 *  every entry asked once. bench/bench_queue measures both.
 *
 * ## Memory and ownership
 *
 * Entries are intrusive: the caller embeds struct sol_queue_entry in its
 * request and owns it; the queue only links it while it is queued. The
 * queue owns one pool of max_length flows and a hash table of about
 * 2 * max_length slots, allocated by sol_queue_init() (80 to 90 bytes per
 * unit of max_length) and freed by sol_queue_destroy(). A flow is recycled
 * as soon as it has no entries, so client state is bounded by max_length
 * however many distinct clients come and go.
 *
 * Single-threaded, like the rest of the daemon. Callbacks (the predicate,
 * the expiry callback) are called synchronously; what they may do is said
 * at each function.
 */
#ifndef SOLLOL_QUEUE_H
#define SOLLOL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define SOL_QUEUE_PRIO_MIN     1
#define SOL_QUEUE_PRIO_MAX     10
#define SOL_QUEUE_PRIO_DEFAULT 5
#define SOL_QUEUE_LEVELS       10         /* priorities 1..10 */
#define SOL_QUEUE_MAX_LENGTH   (1u << 20) /* the largest max_length accepted */
#define SOL_QUEUE_NEVER        UINT64_MAX /* sol_queue_next_expiry(): no expiry due */

struct sol_queue_conf {
    unsigned max_length;  /* entries waiting at most (1024); 0 = no queueing: every push fails */
    uint64_t max_wait_ms; /* an entry that has waited this long expires (300000); 0 = never */
    uint64_t aging_ms;    /* a turn waited this long is worth one priority level (10000);
                             0 = no aging (strict priority) */
};

/*
 * One waiting request, embedded in the caller's request object. Initialise
 * it with sol_queue_entry_init() (or zero it and set the two inputs) before
 * its first push. After it leaves the queue (dispatched, removed, expired)
 * it may be pushed again.
 */
struct sol_queue_entry {
    /* Inputs, set by the caller before sol_queue_push(); not to be changed
     * while queued. */
    uint64_t client_key; /* opaque client identity: API key hash, or client address hash */
    int priority;        /* 1..10, higher first (SOL_QUEUE_PRIO_DEFAULT when the client gave
                            none); push clamps it into 1..10 */

    /* Set by sol_queue_push() (the clock as the queue saw it, see
     * sol_queue_push()); left as is when the entry leaves the queue, so the
     * caller can compute its time in the queue. */
    uint64_t enqueued_ms;

    /* Private. */
    struct sol_queue_entry *fprev, *fnext; /* its flow's FIFO */
    struct sol_queue_entry *aprev, *anext; /* all entries in arrival order */
    uint32_t flow;                         /* its flow's index in the pool */
    uint32_t queued;                       /* 1 while in a queue */
};

/* Counters and gauges for /api/stats. Totals are monotonic; at any time
 * enqueued_total = length + dispatched_total + expired_total + removed_total. */
struct sol_queue_stats {
    size_t length;                             /* entries waiting */
    size_t per_priority[SOL_QUEUE_LEVELS + 1]; /* [p] = entries at priority p; [0] = 0 */
    size_t flows;                              /* (client, priority) pairs waiting */
    uint64_t oldest_wait_ms;                   /* now - oldest enqueued_ms; 0 when empty */
    uint64_t enqueued_total;                   /* successful pushes */
    uint64_t dispatched_total;                 /* pop_for() / dispatch() */
    uint64_t expired_total;                    /* reported by expire() */
    uint64_t rejected_total;                   /* pushes refused: queue full */
    uint64_t removed_total;                    /* remove() of a queued entry */
};

struct sol_queue_flow; /* private (queue.c) */

/*
 * The queue. Allocated by the caller (embedded in the daemon), set up by
 * sol_queue_init(). The caller may read `conf`; every other field is
 * private (use the functions).
 */
struct sol_queue {
    struct sol_queue_conf conf;

    /* Private. */
    uint64_t now_ms; /* the latest clock value seen */
    uint64_t tick;   /* event counter that orders turns */
    size_t length;
    size_t per_priority[SOL_QUEUE_LEVELS];
    size_t flows_used;
    uint64_t enqueued_total, dispatched_total, expired_total, rejected_total, removed_total;
    struct sol_queue_entry *oldest, *newest; /* arrival order */
    struct sol_queue_flow *flows;            /* pool of conf.max_length */
    uint32_t *buckets;                       /* hash (client_key, priority) -> flow chain */
    uint32_t bucket_mask;
    uint32_t free_flow;                                                /* free list of the pool */
    uint32_t turn_head[SOL_QUEUE_LEVELS], turn_tail[SOL_QUEUE_LEVELS]; /* flows per priority,
                                                                          in turn order */
};

/* "May this waiting request run there?" (e.g. the freed node has its
 * model). Must not modify the queue. */
typedef int sol_queue_pred_fn(const struct sol_queue_entry *e, void *ud);

/* An entry that has waited max_wait_ms. Called after it was removed. */
typedef void sol_queue_expired_fn(struct sol_queue_entry *e, void *ud);

/* Fills `c` with the defaults: max_length 1024, max_wait_ms 300000
 * (5 min), aging_ms 10000 (10 s). */
void sol_queue_conf_defaults(struct sol_queue_conf *c);

/*
 * Sets up an empty queue with `c` (NULL = defaults), copied into q->conf.
 * Allocates the flow pool and hash table (the only allocation this module
 * makes). Returns 0, or -1 when max_length exceeds SOL_QUEUE_MAX_LENGTH or
 * memory is short; q is then a valid empty queue with max_length 0 (every
 * push fails), safe to use and to destroy. The clock starts at 0. q->conf
 * must not be changed afterwards.
 */
int sol_queue_init(struct sol_queue *q, const struct sol_queue_conf *c);

/* Frees what init allocated. Entries still queued are forgotten, not
 * touched (the caller owns them and must not use them with q again). */
void sol_queue_destroy(struct sol_queue *q);

/* Prepares an entry for its first push: sets the inputs, clears the rest. */
void sol_queue_entry_init(struct sol_queue_entry *e, uint64_t client_key, int priority);

/* 1 while `e` is queued (pushed, and not yet dispatched, removed or
 * expired), else 0. O(1). */
int sol_queue_is_queued(const struct sol_queue_entry *e);

/*
 * Queues `e` (not queued: checked by assert) at the end of its flow,
 * creating the flow (turn starts now) if the client has nothing waiting at
 * that priority. Clamps e->priority into 1..10 and sets e->enqueued_ms to
 * the queue's clock: max(now_ms, every now_ms passed to q before), so a
 * clock that steps back never reorders arrivals. Returns 0, or -1 when the
 * queue already holds max_length entries (e untouched, rejected_total
 * counts it): answer 503 with Retry-After. Never allocates. O(1) expected.
 */
int sol_queue_push(struct sol_queue *q, struct sol_queue_entry *e, uint64_t now_ms);

/*
 * Takes `e` out of the queue without serving it (the client went away, the
 * request is being freed): the turn of its flow is unchanged, and the flow
 * is recycled if e was its last entry. Returns 1 when e was queued
 * (removed_total counts it), 0 (nothing done) when it was not, so it is
 * safe to call on any initialised entry. O(1) expected.
 */
int sol_queue_remove(struct sol_queue *q, struct sol_queue_entry *e);

/*
 * The entry that would be dispatched next (see "The order") among those
 * `can_run` accepts (NULL: all), without removing it; NULL when there is
 * none. Does not depend on the time. The predicate is called flow by flow
 * in turn order, FIFO inside a flow, each entry at most once, until it
 * accepts one. An entry it rejects keeps its place (its flow's turn
 * restarts only if another entry of that flow is taken).
 * See the top for complexity.
 */
struct sol_queue_entry *sol_queue_peek_for(const struct sol_queue *q, sol_queue_pred_fn *can_run,
                                           void *ud);

/*
 * Serves `e` (queued: checked by assert): removes it, counts it in
 * dispatched_total, and restarts its flow's turn at now (the flow goes to
 * the end of its priority's round). Use it for an entry chosen by
 * sol_queue_peek_for(), or any entry the caller decided to start. O(1)
 * expected.
 */
void sol_queue_dispatch(struct sol_queue *q, struct sol_queue_entry *e, uint64_t now_ms);

/*
 * sol_queue_peek_for() then sol_queue_dispatch() of its result: the best
 * waiting entry `can_run` accepts, removed and counted; NULL when none (then
 * nothing changes but the clock). For "a slot freed on node N" (can_run: can it run on
 * N?) and "a request arrived and slots are free" (can_run: can any node
 * with a free slot run it?).
 */
struct sol_queue_entry *sol_queue_pop_for(struct sol_queue *q, uint64_t now_ms,
                                          sol_queue_pred_fn *can_run, void *ud);

/*
 * Removes every entry that has waited max_wait_ms or more, i.e. with
 * now - enqueued_ms >= max_wait_ms (exactly max_wait_ms expires), oldest
 * first, calling on_expired (may be NULL) for each after its removal.
 * The callback may push, remove or dispatch other entries (the next
 * candidate is read after it returns). Flows' turns are unchanged. Returns
 * how many expired (expired_total counts them); 0 when max_wait_ms is 0.
 * O(1 + expired).
 */
size_t sol_queue_expire(struct sol_queue *q, uint64_t now_ms, sol_queue_expired_fn *on_expired,
                        void *ud);

/* When the next entry will expire (the oldest's enqueued_ms + max_wait_ms),
 * to arm a timer; SOL_QUEUE_NEVER when the queue is empty or max_wait_ms
 * is 0. O(1). */
uint64_t sol_queue_next_expiry(const struct sol_queue *q);

/* The entry that has waited longest (first pushed), or NULL. O(1). */
struct sol_queue_entry *sol_queue_oldest(const struct sol_queue *q);

/* Entries waiting. O(1). */
size_t sol_queue_length(const struct sol_queue *q);

/* Fills `s`; oldest_wait_ms is measured at the queue's clock advanced to
 * now_ms (read-only: the clock itself is not advanced). O(P). */
void sol_queue_stats(const struct sol_queue *q, uint64_t now_ms, struct sol_queue_stats *s);

#endif
