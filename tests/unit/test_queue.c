/*
 * Unit test of the admission queue, on a fake clock: FIFO, priority, aging
 * (with the crossing time computed by hand), round-robin fairness between
 * clients, predicates that skip entries without losing them, bounds and
 * counters, expiry at its exact boundary, removal anywhere, recycling of
 * per-client state, and a randomized check of every operation against a
 * simple O(n) reference that implements the documented rule directly.
 */
#include "base/queue.h"

#include "check.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A request as the daemon would embed the entry. */
struct item {
    int id;
    int model; /* what a node must have to run it */
    struct sol_queue_entry qe;
};

/* The id of an entry's item, -1 for NULL (a function: its argument is
 * often a pop, which must run once). */
static int item_id(const struct sol_queue_entry *e)
{
    return e ? ((const struct item *)((const char *)e - offsetof(struct item, qe)))->id : -1;
}

static struct sol_queue_conf mkconf(unsigned max_length, uint64_t max_wait_ms, uint64_t aging_ms)
{
    struct sol_queue_conf c = {max_length, max_wait_ms, aging_ms};
    return c;
}

static void item_set(struct item *it, int id, uint64_t client, int priority, int model)
{
    it->id = id;
    it->model = model;
    sol_queue_entry_init(&it->qe, client, priority);
}

static int push(struct sol_queue *q, struct item *it, uint64_t now)
{
    return sol_queue_push(q, &it->qe, now);
}

static int pop_id(struct sol_queue *q, uint64_t now)
{
    struct sol_queue_entry *e = sol_queue_pop_for(q, now, NULL, NULL);
    return item_id(e);
}

/* Predicate: the node's models as a bit mask; counts its calls. */
struct node_models {
    unsigned mask;
    unsigned calls;
};

static int has_model(const struct sol_queue_entry *e, void *ud)
{
    struct node_models *n = ud;
    const struct item *it = (const struct item *)((const char *)e - offsetof(struct item, qe));
    n->calls++;
    return (n->mask >> it->model) & 1u;
}

static void check_counters(const struct sol_queue *q, const char *where)
{
    struct sol_queue_stats s;
    sol_queue_stats(q, 0, &s);
    size_t sum = 0;
    for (int p = 0; p <= SOL_QUEUE_LEVELS; p++)
        sum += s.per_priority[p];
    CHECK(s.enqueued_total == s.length + s.dispatched_total + s.expired_total + s.removed_total,
          "%s: enqueued %llu length %zu dispatched %llu expired %llu removed %llu", where,
          (unsigned long long)s.enqueued_total, s.length, (unsigned long long)s.dispatched_total,
          (unsigned long long)s.expired_total, (unsigned long long)s.removed_total);
    CHECK(sum == s.length && s.per_priority[0] == 0, "%s: per-priority sum %zu length %zu", where,
          sum, s.length);
    CHECK(s.flows <= s.length, "%s: flows %zu length %zu", where, s.flows, s.length);
}

static void test_defaults(void)
{
    struct sol_queue_conf c;
    sol_queue_conf_defaults(&c);
    CHECK(c.max_length == 1024 && c.max_wait_ms == 300000 && c.aging_ms == 10000,
          "defaults %u %llu %llu", c.max_length, (unsigned long long)c.max_wait_ms,
          (unsigned long long)c.aging_ms);

    struct sol_queue q;
    CHECK(sol_queue_init(&q, NULL) == 0, "init with defaults");
    CHECK(q.conf.max_length == 1024, "conf copied");
    CHECK(sol_queue_length(&q) == 0 && sol_queue_oldest(&q) == NULL, "empty");
    CHECK(sol_queue_pop_for(&q, 0, NULL, NULL) == NULL, "pop from empty");
    CHECK(sol_queue_next_expiry(&q) == SOL_QUEUE_NEVER, "no expiry when empty");
    sol_queue_destroy(&q);
    sol_queue_destroy(&q); /* twice is harmless */

    struct sol_queue_conf big = mkconf(SOL_QUEUE_MAX_LENGTH + 1, 0, 0);
    CHECK(sol_queue_init(&q, &big) == -1, "max_length over the limit refused");
    struct item it;
    item_set(&it, 1, 1, 5, 0);
    CHECK(push(&q, &it, 0) == -1, "a queue whose init failed rejects pushes");
    sol_queue_destroy(&q);
}

static void test_fifo_within_priority(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(64, 0, 10000);
    sol_queue_init(&q, &c);
    struct item it[10];
    /* one client: strict FIFO */
    for (int i = 0; i < 5; i++) {
        item_set(&it[i], i, 7, 5, 0);
        CHECK(push(&q, &it[i], 100 + (uint64_t)i) == 0, "push %d", i);
    }
    /* distinct clients, one request each: arrival order */
    for (int i = 5; i < 10; i++) {
        item_set(&it[i], i, 100 + (uint64_t)i, 5, 0);
        CHECK(push(&q, &it[i], 200) == 0, "push %d", i);
    }
    CHECK(sol_queue_length(&q) == 10, "length 10");
    CHECK(it[3].qe.enqueued_ms == 103 && it[9].qe.enqueued_ms == 200, "enqueued_ms set");
    /* client 7 started waiting first, so its first entry goes first; its
     * turn then restarts (at 1000), behind clients 105..109 */
    int want[] = {0, 5, 6, 7, 8, 9, 1, 2, 3, 4};
    for (int i = 0; i < 10; i++) {
        int got = pop_id(&q, 1000);
        CHECK(got == want[i], "pop %d: got %d want %d", i, got, want[i]);
    }
    CHECK(it[0].qe.enqueued_ms == 100, "enqueued_ms kept after dispatch");
    CHECK(!sol_queue_is_queued(&it[0].qe), "dispatched entry not queued");
    check_counters(&q, "fifo");
    sol_queue_destroy(&q);

    /* single requests from distinct clients over time: pure arrival order */
    sol_queue_init(&q, &c);
    for (int i = 0; i < 10; i++) {
        item_set(&it[i], i, 500 + (uint64_t)i, 5, 0);
        push(&q, &it[i], (uint64_t)i * 10);
    }
    for (int i = 0; i < 10; i++)
        CHECK(pop_id(&q, 500) == i, "arrival order %d", i);
    sol_queue_destroy(&q);
}

static void test_priority(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(64, 0, 10000);
    sol_queue_init(&q, &c);
    struct item it[8];
    int prio[8] = {3, 7, 5, 10, 1, 0, 11, -4}; /* 0, 11, -4 clamp to 1, 10, 1 */
    for (int i = 0; i < 8; i++) {
        item_set(&it[i], i, 10 + (uint64_t)i, prio[i], 0);
        push(&q, &it[i], 0);
    }
    CHECK(it[5].qe.priority == 1 && it[6].qe.priority == 10 && it[7].qe.priority == 1,
          "priorities clamped: %d %d %d", it[5].qe.priority, it[6].qe.priority, it[7].qe.priority);
    struct sol_queue_stats s;
    sol_queue_stats(&q, 0, &s);
    CHECK(s.per_priority[1] == 3 && s.per_priority[10] == 2 && s.per_priority[5] == 1 &&
              s.per_priority[3] == 1 && s.per_priority[7] == 1,
          "per-priority counts");
    /* same time: strict priority, arrival order inside a priority */
    int want[] = {3, 6, 1, 2, 0, 4, 5, 7};
    for (int i = 0; i < 8; i++) {
        int got = pop_id(&q, 0);
        CHECK(got == want[i], "pop %d: got %d want %d", i, got, want[i]);
    }
    sol_queue_destroy(&q);

    /* the default priority constant is in range and in the middle */
    CHECK(SOL_QUEUE_PRIO_DEFAULT == 5 && SOL_QUEUE_PRIO_MIN == 1 && SOL_QUEUE_PRIO_MAX == 10,
          "priority constants");
}

/*
 * Aging, A = 1000 ms. A priority-1 flow created at t0 has key
 * t0 + 9 * 1000; a priority-9 flow whose turn started at s has key
 * s + 1 * 1000. Smaller key first; equal keys: higher priority first.
 */
static void test_aging(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(64, 0, 1000);
    struct item low, fresh[2], stream[3];

    /* 1. a fresh priority-9 request from a new client every ms: each has
     * key t + 1000, the waiting priority-1 one 9000; 9000 < t + 1000 from
     * t = 8001 on (t = 8000 ties: priority 9 wins) */
    sol_queue_init(&q, &c);
    item_set(&low, 1000000, 1, 1, 0);
    push(&q, &low, 0);
    uint64_t served_at = 0;
    for (uint64_t t = 1; t <= 20000 && !served_at; t++) {
        struct item *f = &fresh[t % 2];
        item_set(f, (int)t, 100 + t, 9, 0);
        push(&q, f, t);
        int got = pop_id(&q, t);
        if (got == low.id)
            served_at = t;
        else
            CHECK(got == (int)t, "t=%llu: got %d", (unsigned long long)t, got);
    }
    CHECK(served_at == 8001, "priority 1 served at %llu, want 8001", (unsigned long long)served_at);
    sol_queue_destroy(&q);

    /* 2. one priority-9 client that always has a request waiting: its turn
     * restarts at each dispatch, so at time t its key is (t - 1) + 1000;
     * 9000 < t + 999 from t = 8002 on */
    sol_queue_init(&q, &c);
    item_set(&low, 1000000, 1, 1, 0);
    push(&q, &low, 0);
    item_set(&stream[0], 0, 2, 9, 0);
    push(&q, &stream[0], 0);
    served_at = 0;
    for (uint64_t t = 1; t <= 20000 && !served_at; t++) {
        struct item *f = &stream[t % 3];
        item_set(f, (int)t, 2, 9, 0);
        push(&q, f, t);
        int got = pop_id(&q, t);
        if (got == low.id)
            served_at = t;
        else
            CHECK(got == (int)t - 1, "t=%llu: got %d", (unsigned long long)t, got);
    }
    CHECK(served_at == 8002, "priority 1 served at %llu, want 8002", (unsigned long long)served_at);
    sol_queue_destroy(&q);

    /* 3. without aging the priority-1 request starves */
    c.aging_ms = 0;
    sol_queue_init(&q, &c);
    item_set(&low, 1000000, 1, 1, 0);
    push(&q, &low, 0);
    int starved = 1;
    for (uint64_t t = 1; t <= 20000; t++) {
        struct item *f = &fresh[t % 2];
        item_set(f, (int)t, 100 + t, 9, 0);
        push(&q, f, t);
        if (pop_id(&q, t) == low.id)
            starved = 0;
    }
    CHECK(starved && sol_queue_is_queued(&low.qe), "no aging: priority 1 still waiting");
    sol_queue_destroy(&q);

    /* 4. the rule between adjacent priorities: a priority-5 flow that has
     * waited w beats a fresh priority-6 one iff w > A; the order does not
     * depend on when it is asked */
    c.aging_ms = 1000;
    struct {
        uint64_t y_at;
        int want;
    } cases[] = {{999, 2}, {1000, 2}, {1001, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct item x, y;
        sol_queue_init(&q, &c);
        item_set(&x, 1, 1, 5, 0);
        item_set(&y, 2, 2, 6, 0);
        push(&q, &x, 0);
        push(&q, &y, cases[k].y_at);
        struct sol_queue_entry *p1 = sol_queue_peek_for(&q, NULL, NULL);
        int got = pop_id(&q, cases[k].y_at + 123456);
        CHECK(got == cases[k].want && item_id(p1) == got, "y at %llu: got %d (peek %d) want %d",
              (unsigned long long)cases[k].y_at, got, item_id(p1), cases[k].want);
        sol_queue_destroy(&q);
    }

    /* 5. default aging: a lone priority-1 request beats fresh priority-9
     * ones after 80 s */
    struct sol_queue_conf d;
    sol_queue_conf_defaults(&d);
    d.max_wait_ms = 0;
    sol_queue_init(&q, &d);
    item_set(&low, 1, 1, 1, 0);
    push(&q, &low, 0);
    item_set(&fresh[0], 2, 2, 9, 0);
    push(&q, &fresh[0], 80000);
    CHECK(item_id(sol_queue_peek_for(&q, NULL, NULL)) == 2, "80 s: tie, priority 9 first");
    sol_queue_remove(&q, &fresh[0].qe);
    item_set(&fresh[0], 2, 2, 9, 0);
    push(&q, &fresh[0], 80001);
    CHECK(item_id(sol_queue_peek_for(&q, NULL, NULL)) == 1, "80.001 s: priority 1 first");
    sol_queue_destroy(&q);
}

static void test_fairness(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(2048, 0, 10000);
    static struct item a[1000];
    struct item b;

    /* A enqueues 1000 at once, B one afterwards: B goes second */
    sol_queue_init(&q, &c);
    for (int i = 0; i < 1000; i++) {
        item_set(&a[i], i, 0xA, 5, 0);
        push(&q, &a[i], 0);
    }
    item_set(&b, 5000, 0xB, 5, 0);
    push(&q, &b, 0);
    CHECK(pop_id(&q, 1) == 0, "A first");
    CHECK(pop_id(&q, 1) == 5000, "then B");
    for (int i = 1; i < 1000; i++)
        CHECK(pop_id(&q, 2) == i, "then the rest of A in order (%d)", i);
    sol_queue_destroy(&q);

    /* A's backlog is old (aging 10 ms, pushed 60 s before B, one pop per
     * 100 ms in between): B still goes within the first 2 pops after its
     * arrival, because aging counts A's wait for its turn, not its
     * entries' age */
    c.aging_ms = 10;
    sol_queue_init(&q, &c);
    for (int i = 0; i < 1000; i++) {
        item_set(&a[i], i, 0xA, 5, 0);
        push(&q, &a[i], 0);
    }
    uint64_t t = 0;
    for (int i = 0; i < 600; i++)
        pop_id(&q, t += 100);
    item_set(&b, 5000, 0xB, 5, 0);
    push(&q, &b, 60000);
    int first = pop_id(&q, 60050), second = pop_id(&q, 60100);
    CHECK(first == 5000 || second == 5000, "B within 2 pops: %d %d", first, second);
    sol_queue_destroy(&q);

    /* round-robin over three backlogged clients; D joins mid-round at the
     * end of the round */
    c.aging_ms = 10000;
    sol_queue_init(&q, &c);
    struct item r[10];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++) {
            item_set(&r[k * 3 + i], (k + 1) * 10 + i + 1, 0xA + (uint64_t)k, 5, 0);
            push(&q, &r[k * 3 + i], 0);
        }
    /* ids: A 11 12 13, B 21 22 23, C 31 32 33 */
    CHECK(pop_id(&q, 0) == 11 && pop_id(&q, 0) == 21, "A1 B1");
    item_set(&r[9], 41, 0xD, 5, 0);
    push(&q, &r[9], 0);
    int want[] = {31, 12, 22, 41, 32, 13, 23, 33};
    for (int i = 0; i < 8; i++) {
        int got = pop_id(&q, 0);
        CHECK(got == want[i], "round-robin %d: got %d want %d", i, got, want[i]);
    }
    sol_queue_destroy(&q);

    /* a client's flows at different priorities are separate: a higher
     * priority of A does not spend B's turn at priority 5 */
    sol_queue_init(&q, &c);
    item_set(&r[0], 1, 0xA, 9, 0);
    item_set(&r[1], 2, 0xA, 5, 0);
    item_set(&r[2], 3, 0xB, 5, 0);
    item_set(&r[3], 4, 0xA, 5, 0);
    for (int i = 0; i < 4; i++)
        push(&q, &r[i], 0);
    int want2[] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++)
        CHECK(pop_id(&q, 0) == want2[i], "per-priority flows %d", i);
    sol_queue_destroy(&q);
}

static void test_predicate(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(64, 0, 10000);
    sol_queue_init(&q, &c);
    struct item it[8];
    /* distinct clients, same priority: A(m0) B(m1) C(m0) D(m1) */
    for (int i = 0; i < 4; i++) {
        item_set(&it[i], i, 10 + (uint64_t)i, 5, i % 2);
        push(&q, &it[i], 0);
    }
    struct node_models m1 = {1u << 1, 0}, m0 = {1u << 0, 0}, none = {0, 0}, all = {~0u, 0};
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m1)) == 1, "m1 node takes B");
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m1)) == 3, "then D");
    CHECK(sol_queue_pop_for(&q, 1, has_model, &m1) == NULL, "then nothing for m1");
    CHECK(sol_queue_length(&q) == 2, "A and C still waiting");
    none.calls = 0;
    CHECK(sol_queue_peek_for(&q, has_model, &none) == NULL && none.calls == 2,
          "rejecting predicate asks each entry once (%u calls)", none.calls);
    CHECK(item_id(sol_queue_pop_for(&q, 2, has_model, &m0)) == 0, "A kept its place");
    CHECK(item_id(sol_queue_pop_for(&q, 2, has_model, &m0)) == 2, "then C");
    sol_queue_destroy(&q);

    /* inside one client: its m1 entry is taken past its m0 head; the m0
     * entries stay in order */
    sol_queue_init(&q, &c);
    item_set(&it[0], 0, 0xC, 5, 0);
    item_set(&it[1], 1, 0xC, 5, 1);
    item_set(&it[2], 2, 0xC, 5, 0);
    item_set(&it[3], 3, 0xE, 5, 1);
    for (int i = 0; i < 4; i++)
        push(&q, &it[i], 0);
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m1)) == 1, "client C's m1 entry");
    /* C was just served: E's m1 request goes before C's next */
    CHECK(item_id(sol_queue_peek_for(&q, has_model, &all)) == 3, "E is next for any node");
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m0)) == 0, "m0 node: C's first");
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m0)) == 2, "then C's second");
    sol_queue_destroy(&q);

    /* common case cost: an accepting predicate is called once per pop */
    sol_queue_init(&q, &c);
    for (int i = 0; i < 8; i++) {
        item_set(&it[i], i, (uint64_t)i % 3, 1 + i % 10, 0);
        push(&q, &it[i], 0);
    }
    for (int i = 0; i < 8; i++) {
        all.calls = 0;
        CHECK(sol_queue_pop_for(&q, 1, has_model, &all) != NULL && all.calls == 1,
              "one predicate call (%u)", all.calls);
    }
    sol_queue_destroy(&q);

    /* the best entry is found through rejected higher flows: priorities
     * 10..1 each with an m0 entry then an m1 entry; an m1 node gets the
     * priority-10 client's m1 entry after asking 2 entries */
    sol_queue_init(&q, &c);
    struct item pm[20];
    for (int p = 10; p >= 1; p--)
        for (int k = 0; k < 2; k++) {
            struct item *x = &pm[(10 - p) * 2 + k];
            item_set(x, p * 10 + k, 0x50, p, k);
            push(&q, x, 0);
        }
    m1.calls = 0;
    CHECK(item_id(sol_queue_pop_for(&q, 1, has_model, &m1)) == 101 && m1.calls == 2,
          "priority 10's m1 entry, %u calls", m1.calls);
    sol_queue_destroy(&q);
}

static void test_bounds(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(4, 0, 10000);
    sol_queue_init(&q, &c);
    struct item it[6];
    for (int i = 0; i < 4; i++) {
        item_set(&it[i], i, (uint64_t)i, 5, 0);
        CHECK(push(&q, &it[i], 0) == 0, "push %d fits", i);
    }
    item_set(&it[4], 4, 99, 10, 0);
    CHECK(push(&q, &it[4], 0) == -1, "fifth push: full");
    CHECK(!sol_queue_is_queued(&it[4].qe), "rejected entry not queued");
    CHECK(push(&q, &it[4], 0) == -1, "still full");
    struct sol_queue_stats s;
    sol_queue_stats(&q, 0, &s);
    CHECK(s.length == 4 && s.rejected_total == 2 && s.enqueued_total == 4, "counters %zu %llu",
          s.length, (unsigned long long)s.rejected_total);
    CHECK(pop_id(&q, 1) == 0, "pop");
    CHECK(push(&q, &it[4], 1) == 0, "room again");
    CHECK(sol_queue_remove(&q, &it[1].qe) == 1, "remove");
    item_set(&it[5], 5, 5, 5, 0);
    CHECK(push(&q, &it[5], 1) == 0, "room after remove");
    sol_queue_stats(&q, 1, &s);
    CHECK(s.length == 4 && s.enqueued_total == 6 && s.dispatched_total == 1 &&
              s.removed_total == 1 && s.rejected_total == 2 && s.expired_total == 0,
          "totals");
    check_counters(&q, "bounds");
    sol_queue_destroy(&q);

    /* max_length 0: queueing off */
    c.max_length = 0;
    CHECK(sol_queue_init(&q, &c) == 0, "init with max_length 0");
    item_set(&it[0], 0, 1, 5, 0);
    CHECK(push(&q, &it[0], 0) == -1, "max_length 0 rejects");
    sol_queue_destroy(&q);
}

struct expired_log {
    int ids[16];
    int n;
    struct sol_queue *q;
    struct item *victim; /* removed by the callback */
    struct item *extra;  /* pushed by the callback */
};

static void on_expired(struct sol_queue_entry *e, void *ud)
{
    struct expired_log *l = ud;
    CHECK(!sol_queue_is_queued(e), "expired entry already out");
    if (l->n < 16)
        l->ids[l->n++] = item_id(e);
    if (l->victim) {
        CHECK(sol_queue_remove(l->q, &l->victim->qe) == 1, "callback removes another");
        l->victim = NULL;
    }
    if (l->extra) {
        CHECK(sol_queue_push(l->q, &l->extra->qe, 0) == 0, "callback pushes");
        l->extra = NULL;
    }
}

static void test_expiry(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(16, 1000, 10000);
    sol_queue_init(&q, &c);
    struct item it[6];
    item_set(&it[0], 0, 1, 1, 0);
    item_set(&it[1], 1, 2, 10, 0);
    push(&q, &it[0], 0);
    push(&q, &it[1], 500);
    struct expired_log log = {.n = 0, .q = &q};
    CHECK(sol_queue_next_expiry(&q) == 1000, "next expiry 1000: %llu",
          (unsigned long long)sol_queue_next_expiry(&q));
    CHECK(sol_queue_expire(&q, 999, on_expired, &log) == 0, "999 ms: nothing");
    CHECK(sol_queue_expire(&q, 1000, on_expired, &log) == 1 && log.n == 1 && log.ids[0] == 0,
          "exactly 1000 ms: the first expires");
    CHECK(sol_queue_next_expiry(&q) == 1500, "next expiry 1500");
    CHECK(sol_queue_expire(&q, 1499, on_expired, &log) == 0, "1499: nothing");
    CHECK(sol_queue_expire(&q, 1500, NULL, NULL) == 1, "1500: second (no callback)");
    CHECK(sol_queue_length(&q) == 0 && sol_queue_next_expiry(&q) == SOL_QUEUE_NEVER, "empty");
    struct sol_queue_stats s;
    sol_queue_stats(&q, 1500, &s);
    CHECK(s.expired_total == 2 && s.flows == 0, "expired_total %llu",
          (unsigned long long)s.expired_total);

    /* several at once, oldest first; the callback removes a younger entry
     * and pushes a new one */
    for (int i = 0; i < 4; i++) {
        item_set(&it[i], 10 + i, 7, 5, 0);
        push(&q, &it[i], 2000 + (uint64_t)i * 100);
    }
    item_set(&it[4], 20, 8, 5, 0);
    log = (struct expired_log){.n = 0, .q = &q, .victim = &it[3], .extra = &it[4]};
    CHECK(sol_queue_expire(&q, 3200, on_expired, &log) == 3, "3 expire");
    CHECK(log.n == 3 && log.ids[0] == 10 && log.ids[1] == 11 && log.ids[2] == 12,
          "oldest first: %d %d %d", log.ids[0], log.ids[1], log.ids[2]);
    CHECK(sol_queue_length(&q) == 1 && item_id(sol_queue_oldest(&q)) == 20,
          "only the pushed one left");
    CHECK(it[4].qe.enqueued_ms == 3200, "pushed at the queue's clock");
    check_counters(&q, "expiry");
    sol_queue_destroy(&q);

    /* max_wait 0: never */
    c.max_wait_ms = 0;
    sol_queue_init(&q, &c);
    item_set(&it[0], 0, 1, 5, 0);
    push(&q, &it[0], 0);
    CHECK(sol_queue_expire(&q, UINT64_MAX, NULL, NULL) == 0, "no expiry with max_wait 0");
    CHECK(sol_queue_next_expiry(&q) == SOL_QUEUE_NEVER, "never");
    sol_queue_destroy(&q);

    /* a clock that steps back does not make the wait negative */
    c.max_wait_ms = 1000;
    sol_queue_init(&q, &c);
    item_set(&it[0], 0, 1, 5, 0);
    item_set(&it[1], 1, 2, 5, 0);
    push(&q, &it[0], 5000);
    push(&q, &it[1], 4000);
    CHECK(it[1].qe.enqueued_ms == 5000, "clock never steps back");
    CHECK(sol_queue_expire(&q, 100, NULL, NULL) == 0, "old now: nothing");
    sol_queue_stats(&q, 100, &s);
    CHECK(s.oldest_wait_ms == 0, "oldest wait 0 at an old now");
    sol_queue_stats(&q, 5300, &s);
    CHECK(s.oldest_wait_ms == 300, "oldest wait 300");
    CHECK(sol_queue_expire(&q, 6000, NULL, NULL) == 2, "both at 6000");
    sol_queue_destroy(&q);
}

static void test_removal(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(16, 0, 10000);
    struct item x[4], y;

    /* middle of a client's FIFO */
    sol_queue_init(&q, &c);
    for (int i = 0; i < 4; i++) {
        item_set(&x[i], i, 0xA, 5, 0);
        push(&q, &x[i], 0);
    }
    item_set(&y, 9, 0xB, 5, 0);
    push(&q, &y, 0);
    CHECK(sol_queue_remove(&q, &x[2].qe) == 1, "remove middle");
    CHECK(sol_queue_remove(&q, &x[2].qe) == 0, "second remove is a no-op");
    int want[] = {0, 9, 1, 3};
    for (int i = 0; i < 4; i++)
        CHECK(pop_id(&q, 0) == want[i], "after middle removal %d", i);
    CHECK(sol_queue_length(&q) == 0, "empty");
    sol_queue_destroy(&q);

    /* head of a client's FIFO: the client keeps its turn */
    sol_queue_init(&q, &c);
    for (int i = 0; i < 4; i++) {
        item_set(&x[i], i, 0xA, 5, 0);
        push(&q, &x[i], 0);
    }
    item_set(&y, 9, 0xB, 5, 0);
    push(&q, &y, 0);
    CHECK(sol_queue_remove(&q, &x[0].qe) == 1, "remove head");
    CHECK(item_id(sol_queue_oldest(&q)) == 1, "oldest is now x1");
    int want2[] = {1, 9, 2, 3};
    for (int i = 0; i < 4; i++)
        CHECK(pop_id(&q, 0) == want2[i], "after head removal %d", i);
    sol_queue_destroy(&q);

    /* last entry of a client: its state goes; coming back it joins the
     * end of the round */
    sol_queue_init(&q, &c);
    item_set(&x[0], 0, 0xA, 5, 0);
    item_set(&y, 9, 0xB, 5, 0);
    push(&q, &x[0], 0);
    push(&q, &y, 0);
    struct sol_queue_stats s;
    sol_queue_stats(&q, 0, &s);
    CHECK(s.flows == 2, "two flows");
    CHECK(sol_queue_remove(&q, &x[0].qe) == 1, "remove the client's only entry");
    sol_queue_stats(&q, 0, &s);
    CHECK(s.flows == 1 && s.removed_total == 1 && s.length == 1, "its flow is gone");
    push(&q, &x[0], 0);
    CHECK(pop_id(&q, 0) == 9 && pop_id(&q, 0) == 0, "B first, A at the end of the round");

    /* the newest (tail of the arrival list) and an entry never pushed */
    item_set(&x[1], 1, 1, 5, 0);
    item_set(&x[2], 2, 2, 5, 0);
    push(&q, &x[1], 0);
    push(&q, &x[2], 0);
    CHECK(sol_queue_remove(&q, &x[2].qe) == 1, "remove newest");
    item_set(&x[3], 3, 3, 5, 0);
    CHECK(sol_queue_remove(&q, &x[3].qe) == 0, "never pushed: no-op");
    CHECK(pop_id(&q, 0) == 1 && sol_queue_length(&q) == 0, "x1 left, then empty");
    check_counters(&q, "removal");

    /* dispatch of a chosen entry counts as the client's turn */
    item_set(&x[0], 0, 0xA, 5, 0);
    item_set(&x[1], 1, 0xA, 5, 0);
    item_set(&y, 9, 0xB, 5, 0);
    push(&q, &x[0], 0);
    push(&q, &x[1], 0);
    push(&q, &y, 0);
    sol_queue_dispatch(&q, &x[1].qe, 0);
    CHECK(pop_id(&q, 0) == 9 && pop_id(&q, 0) == 0, "B's turn, then A's remaining entry");
    sol_queue_stats(&q, 0, &s);
    CHECK(s.dispatched_total == 6, "dispatched_total %llu", (unsigned long long)s.dispatched_total);

    /* shutdown pattern */
    for (int i = 0; i < 4; i++) {
        item_set(&x[i], i, (uint64_t)i, 1 + i, 0);
        push(&q, &x[i], 0);
    }
    int n = 0;
    struct sol_queue_entry *e;
    while ((e = sol_queue_oldest(&q))) {
        CHECK(item_id(e) == n, "drain in arrival order");
        sol_queue_remove(&q, e);
        n++;
    }
    CHECK(n == 4 && sol_queue_length(&q) == 0, "drained");
    sol_queue_destroy(&q);
}

static void test_recycling(void)
{
    struct sol_queue q;
    struct sol_queue_conf c = mkconf(8, 1000, 10000);
    sol_queue_init(&q, &c);
    static struct item it[9];
    int failures = 0, misorder = 0;
    size_t max_flows = 0;
    int next_pop = 0;
    uint64_t t = 0;
    for (int i = 0; i < 100000; i++) {
        struct item *x = &it[i % 9];
        if (sol_queue_length(&q) == 8) {
            /* distinct clients, one request each: arrival order */
            if (pop_id(&q, t) != next_pop)
                misorder++;
            next_pop++;
        }
        item_set(x, i, 0x1234567800000000ull + (uint64_t)i, 5, 0);
        if (push(&q, x, t) != 0)
            failures++;
        struct sol_queue_stats s;
        sol_queue_stats(&q, t, &s);
        if (s.flows > max_flows)
            max_flows = s.flows;
    }
    CHECK(failures == 0 && misorder == 0, "100k clients: %d failures, %d out of order", failures,
          misorder);
    CHECK(max_flows <= 8, "flows never above max_length: %zu", max_flows);

    /* the same through removal and expiry, with mixed priorities */
    for (int i = 0; i < 100000; i++) {
        struct item *x = &it[i % 9];
        if (sol_queue_is_queued(&x->qe))
            sol_queue_remove(&q, &x->qe);
        if (sol_queue_length(&q) == 8 && i % 3 == 0)
            sol_queue_pop_for(&q, t, NULL, NULL);
        t += i % 7 == 0 ? 400 : 0;
        sol_queue_expire(&q, t, NULL, NULL);
        if (sol_queue_length(&q) == 8)
            sol_queue_remove(&q, sol_queue_oldest(&q));
        item_set(x, i, 0x9900000000000000ull + (uint64_t)i, 1 + i % 10, 0);
        if (push(&q, x, t) != 0)
            failures++;
    }
    struct sol_queue_stats s;
    sol_queue_stats(&q, t, &s);
    CHECK(failures == 0 && s.flows <= 8 && s.length <= 8, "churn: %d failures, %zu flows", failures,
          s.flows);
    check_counters(&q, "recycling");
    sol_queue_destroy(&q);
}

/* ---- randomized model check ---- */

/*
 * The reference: the rule of queue.h written directly, O(n) per step.
 * Flows are (client, priority) with a turn start `since` and the event
 * counter `tick`; the chosen entry is, among accepted entries, the one
 * whose flow has the highest effective priority p + (now - since) / A
 * (compared exactly, scaled by A), then higher p, then smaller tick; inside
 * the flow the earliest pushed.
 */
#define MC_ITEMS 96

struct ref_flow {
    uint64_t client;
    int p;
    uint64_t since, tick;
    int live;
};

struct ref {
    struct sol_queue_conf conf;
    uint64_t now, tick, seq;
    int queued[MC_ITEMS];
    uint64_t client[MC_ITEMS], enq[MC_ITEMS], eseq[MC_ITEMS];
    int p[MC_ITEMS];
    struct ref_flow flows[MC_ITEMS];
    size_t length;
    uint64_t enqueued, dispatched, expired, rejected, removed;
};

static int ref_flow_of(const struct ref *r, uint64_t client, int p)
{
    for (int i = 0; i < MC_ITEMS; i++)
        if (r->flows[i].live && r->flows[i].client == client && r->flows[i].p == p)
            return i;
    return -1;
}

static void ref_clock(struct ref *r, uint64_t now)
{
    if (now > r->now)
        r->now = now;
}

static int ref_push(struct ref *r, int i, uint64_t client, int p, uint64_t now)
{
    ref_clock(r, now);
    if (r->length >= r->conf.max_length) {
        r->rejected++;
        return -1;
    }
    p = p < 1 ? 1 : p > 10 ? 10 : p;
    if (ref_flow_of(r, client, p) < 0) {
        int f = 0;
        while (r->flows[f].live)
            f++;
        r->flows[f] = (struct ref_flow){client, p, r->now, ++r->tick, 1};
    }
    r->queued[i] = 1;
    r->client[i] = client;
    r->p[i] = p;
    r->enq[i] = r->now;
    r->eseq[i] = ++r->seq;
    r->length++;
    r->enqueued++;
    return 0;
}

/* Kills the flow of item i if it has no queued entries left; returns 1 if
 * it is still live. */
static int ref_flow_settle(struct ref *r, int f)
{
    for (int j = 0; j < MC_ITEMS; j++)
        if (r->queued[j] && r->client[j] == r->flows[f].client && r->p[j] == r->flows[f].p)
            return 1;
    r->flows[f].live = 0;
    return 0;
}

/* Takes item i out; returns its flow (not yet settled). */
static int ref_unqueue(struct ref *r, int i)
{
    int f = ref_flow_of(r, r->client[i], r->p[i]);
    r->queued[i] = 0;
    r->length--;
    return f;
}

/* The effective priority of flow f, scaled by A: p * A + (now - since). */
static int64_t ref_eff(const struct ref *r, const struct ref_flow *f)
{
    if (!r->conf.aging_ms)
        return f->p;
    return (int64_t)f->p * (int64_t)r->conf.aging_ms + (int64_t)(r->now - f->since);
}

/* 1 when item i is chosen before item j. */
static int ref_better(const struct ref *r, int i, int j)
{
    const struct ref_flow *fi = &r->flows[ref_flow_of(r, r->client[i], r->p[i])];
    const struct ref_flow *fj = &r->flows[ref_flow_of(r, r->client[j], r->p[j])];
    if (fi == fj)
        return r->eseq[i] < r->eseq[j];
    int64_t ei = ref_eff(r, fi), ej = ref_eff(r, fj);
    if (ei != ej)
        return ei > ej;
    if (fi->p != fj->p)
        return fi->p > fj->p;
    return fi->tick < fj->tick;
}

/* mask: models the node has; ~0u with use_pred 0 = no predicate */
static int ref_pick(const struct ref *r, const int *model, unsigned mask)
{
    int best = -1;
    for (int i = 0; i < MC_ITEMS; i++) {
        if (!r->queued[i] || !((mask >> model[i]) & 1u))
            continue;
        if (best < 0 || ref_better(r, i, best))
            best = i;
    }
    return best;
}

static void ref_dispatch(struct ref *r, int i, uint64_t now)
{
    ref_clock(r, now);
    int f = ref_unqueue(r, i);
    if (ref_flow_settle(r, f)) {
        r->flows[f].since = r->now;
        r->flows[f].tick = ++r->tick;
    }
    r->dispatched++;
}

static int ref_expire(struct ref *r, uint64_t now, int *out)
{
    int n = 0;
    ref_clock(r, now);
    if (!r->conf.max_wait_ms)
        return 0;
    for (;;) {
        int oldest = -1;
        for (int i = 0; i < MC_ITEMS; i++)
            if (r->queued[i] && (oldest < 0 || r->eseq[i] < r->eseq[oldest]))
                oldest = i;
        if (oldest < 0 || r->now - r->enq[oldest] < r->conf.max_wait_ms)
            return n;
        ref_flow_settle(r, ref_unqueue(r, oldest));
        r->expired++;
        out[n++] = oldest;
    }
}

struct mc_expired {
    int ids[MC_ITEMS];
    int n;
};

static void mc_on_expired(struct sol_queue_entry *e, void *ud)
{
    struct mc_expired *x = ud;
    x->ids[x->n++] = item_id(e);
}

static uint64_t mc_rng;

static uint64_t mc_rnd(void)
{
    mc_rng ^= mc_rng >> 12;
    mc_rng ^= mc_rng << 25;
    mc_rng ^= mc_rng >> 27;
    return mc_rng * 0x2545f4914f6cdd1dull;
}

/* Compares everything observable; returns 0 and reports on a mismatch. */
static int mc_compare(const struct sol_queue *q, const struct ref *r, const struct item *items,
                      uint64_t now, int op)
{
    struct sol_queue_stats s;
    sol_queue_stats(q, now, &s);
    size_t per[SOL_QUEUE_LEVELS + 1] = {0};
    int oldest = -1;
    for (int i = 0; i < MC_ITEMS; i++) {
        if (sol_queue_is_queued(&items[i].qe) != r->queued[i]) {
            fprintf(stderr, "op %d: item %d queued %d, reference %d\n", op, i,
                    sol_queue_is_queued(&items[i].qe), r->queued[i]);
            return 0;
        }
        if (!r->queued[i])
            continue;
        per[r->p[i]]++;
        if (oldest < 0 || r->eseq[i] < r->eseq[oldest])
            oldest = i;
    }
    size_t flows = 0;
    for (int f = 0; f < MC_ITEMS; f++)
        flows += r->flows[f].live != 0;
    uint64_t t = now > r->now ? now : r->now;
    uint64_t oldest_wait = oldest < 0 ? 0 : t - r->enq[oldest];
    uint64_t next =
        oldest < 0 || !r->conf.max_wait_ms ? SOL_QUEUE_NEVER : r->enq[oldest] + r->conf.max_wait_ms;
    int ok = s.length == r->length && s.flows == flows && s.oldest_wait_ms == oldest_wait &&
             s.enqueued_total == r->enqueued && s.dispatched_total == r->dispatched &&
             s.expired_total == r->expired && s.rejected_total == r->rejected &&
             s.removed_total == r->removed && sol_queue_next_expiry(q) == next &&
             item_id(sol_queue_oldest(q)) == (oldest < 0 ? -1 : oldest) &&
             memcmp(per, s.per_priority, sizeof per) == 0;
    if (!ok)
        fprintf(stderr,
                "op %d: stats differ: length %zu/%zu flows %zu/%zu oldest wait %llu/%llu "
                "enq %llu/%llu disp %llu/%llu exp %llu/%llu rej %llu/%llu rem %llu/%llu\n",
                op, s.length, r->length, s.flows, flows, (unsigned long long)s.oldest_wait_ms,
                (unsigned long long)oldest_wait, (unsigned long long)s.enqueued_total,
                (unsigned long long)r->enqueued, (unsigned long long)s.dispatched_total,
                (unsigned long long)r->dispatched, (unsigned long long)s.expired_total,
                (unsigned long long)r->expired, (unsigned long long)s.rejected_total,
                (unsigned long long)r->rejected, (unsigned long long)s.removed_total,
                (unsigned long long)r->removed);
    return ok;
}

/* `ops` random operations on the queue and the reference, compared after
 * each. Returns the number of entries dispatched (to show the run did
 * something). */
static unsigned long model_check(struct sol_queue_conf c, uint64_t seed, int ops, int clients,
                                 uint64_t step)
{
    static struct item items[MC_ITEMS];
    static struct ref r;
    int model[MC_ITEMS] = {0};
    struct sol_queue q;
    memset(&r, 0, sizeof r);
    r.conf = c;
    mc_rng = seed;
    CHECK(sol_queue_init(&q, &c) == 0, "model check init");
    for (int i = 0; i < MC_ITEMS; i++)
        item_set(&items[i], i, 0, 5, 0);
    uint64_t now = 1000, unique = 1u << 20;
    unsigned long popped = 0;
    int ok = 1;
    for (int op = 0; op < ops && ok; op++) {
        unsigned dt = (unsigned)(mc_rnd() % 100);
        if (dt < 70)
            now += step ? (mc_rnd() % 4) * step : mc_rnd() % 300;
        else if (dt < 74)
            now -= mc_rnd() % 500 < now ? mc_rnd() % 500 : 0; /* the clock steps back */
        else if (dt < 77)
            now += mc_rnd() % (c.max_wait_ms ? c.max_wait_ms : 20000);
        unsigned kind = (unsigned)(mc_rnd() % 100);
        if (kind < 40) {
            int i = (int)(mc_rnd() % MC_ITEMS), tries = 0;
            while (r.queued[i] && tries++ < MC_ITEMS)
                i = (i + 1) % MC_ITEMS;
            if (r.queued[i])
                continue;
            uint64_t client = mc_rnd() % 4 == 0 ? unique++ : mc_rnd() % (uint64_t)clients;
            int p = (int)(mc_rnd() % 14) - 1;
            model[i] = (int)(mc_rnd() % 4);
            item_set(&items[i], i, client, p, model[i]);
            int rc = push(&q, &items[i], now);
            int rrc = ref_push(&r, i, client, p, now);
            ok = rc == rrc && (rc != 0 || items[i].qe.enqueued_ms == r.enq[i]);
            if (!ok)
                fprintf(stderr, "op %d: push rc %d/%d\n", op, rc, rrc);
        } else if (kind < 75) {
            int use_pred = mc_rnd() % 3 != 0;
            struct node_models nm = {use_pred ? (unsigned)(mc_rnd() % 16) : ~0u, 0};
            int want;
            struct sol_queue_entry *e;
            if (kind < 65) {
                e = sol_queue_pop_for(&q, now, use_pred ? has_model : NULL, &nm);
                ref_clock(&r, now);
                want = ref_pick(&r, model, nm.mask);
                if (want >= 0)
                    ref_dispatch(&r, want, now);
                popped += e != NULL;
            } else {
                e = sol_queue_peek_for(&q, use_pred ? has_model : NULL, &nm);
                want = ref_pick(&r, model, nm.mask);
            }
            ok = item_id(e) == want;
            if (!ok)
                fprintf(stderr, "op %d: %s(mask %x) got %d want %d\n", op,
                        kind < 65 ? "pop" : "peek", nm.mask, item_id(e), want);
        } else if (kind < 85) {
            int i = (int)(mc_rnd() % MC_ITEMS);
            int rc = sol_queue_remove(&q, &items[i].qe);
            int rrc = r.queued[i];
            if (rrc) {
                ref_flow_settle(&r, ref_unqueue(&r, i));
                r.removed++;
            }
            ok = rc == rrc;
            if (!ok)
                fprintf(stderr, "op %d: remove rc %d/%d\n", op, rc, rrc);
        } else if (kind < 93) {
            struct mc_expired got = {.n = 0};
            int want[MC_ITEMS];
            size_t n = sol_queue_expire(&q, now, mc_on_expired, &got);
            int wn = ref_expire(&r, now, want);
            ok =
                (int)n == wn && got.n == wn && memcmp(got.ids, want, sizeof(int) * (size_t)wn) == 0;
            if (!ok)
                fprintf(stderr, "op %d: expire %zu/%d\n", op, n, wn);
        } else {
            int i = (int)(mc_rnd() % MC_ITEMS), tries = 0;
            while (!r.queued[i] && tries++ < MC_ITEMS)
                i = (i + 1) % MC_ITEMS;
            if (!r.queued[i])
                continue;
            sol_queue_dispatch(&q, &items[i].qe, now);
            ref_dispatch(&r, i, now);
            popped++;
        }
        if (ok)
            ok = mc_compare(&q, &r, items, now, op);
        CHECK(ok, "model check (seed %llu) diverged at op %d", (unsigned long long)seed, op);
    }
    sol_queue_destroy(&q);
    return popped;
}

static void test_model_check(void)
{
    static const struct {
        unsigned max_length;
        uint64_t max_wait_ms, aging_ms;
        int clients;
        uint64_t step; /* time moves by multiples of it (0: by 0..299 ms) */
    } cfgs[] = {
        {64, 5000, 1000, 5, 0},   /* aging and expiry, a few clients */
        {64, 0, 0, 5, 0},         /* strict priority, round-robin */
        {16, 2000, 100, 3, 0},    /* often full, fast aging */
        {1, 1000, 1000, 2, 0},    /* a queue of one */
        {96, 20000, 7, 12, 0},    /* many clients, aging of 7 ms */
        {80, 30000, 10000, 8, 0}, /* default aging, long waits */
        {64, 10000, 100, 4, 50},  /* time in half aging periods: many exact ties */
        {48, 0, 30, 6, 30},       /* time in whole aging periods, no expiry */
    };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        struct sol_queue_conf c = mkconf(cfgs[k].max_length, cfgs[k].max_wait_ms, cfgs[k].aging_ms);
        unsigned long popped =
            model_check(c, 0x9e3779b97f4a7c15ull + k, 20000, cfgs[k].clients, cfgs[k].step);
        CHECK(popped > 1000 || cfgs[k].max_length == 1, "config %zu dispatched %lu", k, popped);
    }
}

int main(int argc, char **argv)
{
    test_defaults();
    test_fifo_within_priority();
    test_priority();
    test_aging();
    test_fairness();
    test_predicate();
    test_bounds();
    test_expiry();
    test_removal();
    test_recycling();
    test_model_check();
    return check_summary();
}
