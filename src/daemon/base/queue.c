/*
 * queue.c - the admission queue (see queue.h for the order and contracts).
 *
 * Layout:
 *  - every queued entry is on two intrusive lists: its flow's FIFO, and the
 *    arrival list of all entries (expiry, oldest wait, shutdown);
 *  - flows live in a pool of max_length (a flow holds >= 1 entry, so the
 *    pool cannot run out), found by (client_key, priority) in a chained
 *    hash table of >= 2 * max_length buckets;
 *  - per priority, the flows form a "turn list" in tick order. Inside one
 *    priority that is also key order (key = since + const, and since grows
 *    with tick), and a served or new flow always goes to the tail. So the
 *    best flow overall is the best of the 10 list heads, and visiting flows
 *    in dispatch order is a 10-way merge of the lists.
 */
#include "base/queue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

struct sol_queue_flow {
    uint64_t client_key;
    uint64_t since_ms; /* turn start: last dispatch, or creation */
    uint64_t key;      /* since + (10 - priority) * aging, or 10 - priority without aging */
    uint64_t tick;     /* q->tick when since was set */
    struct sol_queue_entry *head, *tail;
    uint32_t prev, next; /* turn list of its priority; next links the free list */
    uint32_t hnext;      /* hash chain */
    uint32_t count;      /* entries; 0 = free */
    int priority;
};

void sol_queue_conf_defaults(struct sol_queue_conf *c)
{
    c->max_length = 1024;
    c->max_wait_ms = 300000;
    c->aging_ms = 10000;
}

int sol_queue_init(struct sol_queue *q, const struct sol_queue_conf *c)
{
    memset(q, 0, sizeof *q);
    if (c)
        q->conf = *c;
    else
        sol_queue_conf_defaults(&q->conf);
    q->free_flow = NIL;
    for (unsigned i = 0; i < SOL_QUEUE_LEVELS; i++)
        q->turn_head[i] = q->turn_tail[i] = NIL;
    if (q->conf.max_length > SOL_QUEUE_MAX_LENGTH) {
        q->conf.max_length = 0;
        return -1;
    }

    uint32_t nb = 16;
    while (nb < 2u * q->conf.max_length)
        nb <<= 1;
    q->buckets = malloc(nb * sizeof *q->buckets);
    if (q->conf.max_length) {
        q->flows = calloc(q->conf.max_length, sizeof *q->flows);
    }
    if (!q->buckets || (q->conf.max_length && !q->flows)) {
        free(q->buckets);
        free(q->flows);
        q->buckets = NULL;
        q->flows = NULL;
        q->conf.max_length = 0;
        return -1;
    }
    for (uint32_t i = 0; i < nb; i++)
        q->buckets[i] = NIL;
    q->bucket_mask = nb - 1;
    /* free list in index order */
    for (uint32_t i = q->conf.max_length; i-- > 0;) {
        q->flows[i].next = q->free_flow;
        q->free_flow = i;
    }
    return 0;
}

void sol_queue_destroy(struct sol_queue *q)
{
    free(q->flows);
    free(q->buckets);
    q->flows = NULL;
    q->buckets = NULL;
    q->length = 0;
    q->oldest = q->newest = NULL;
}

void sol_queue_entry_init(struct sol_queue_entry *e, uint64_t client_key, int priority)
{
    memset(e, 0, sizeof *e);
    e->client_key = client_key;
    e->priority = priority;
}

int sol_queue_is_queued(const struct sol_queue_entry *e)
{
    return e->queued != 0;
}

static uint64_t clock_advance(struct sol_queue *q, uint64_t now_ms)
{
    if (now_ms > q->now_ms)
        q->now_ms = now_ms;
    return q->now_ms;
}

/* ---- flows: hash table and pool ---- */

static uint32_t flow_hash(const struct sol_queue *q, uint64_t client_key, int priority)
{
    /* splitmix64 finaliser over the key and the priority */
    uint64_t x = client_key ^ ((uint64_t)priority * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)x & q->bucket_mask;
}

static uint32_t flow_find(const struct sol_queue *q, uint64_t client_key, int priority)
{
    uint32_t i = q->buckets[flow_hash(q, client_key, priority)];
    while (i != NIL) {
        const struct sol_queue_flow *f = &q->flows[i];
        if (f->client_key == client_key && f->priority == priority)
            return i;
        i = f->hnext;
    }
    return NIL;
}

static void hash_unlink(struct sol_queue *q, uint32_t idx)
{
    struct sol_queue_flow *f = &q->flows[idx];
    uint32_t *link = &q->buckets[flow_hash(q, f->client_key, f->priority)];
    while (*link != idx)
        link = &q->flows[*link].hnext;
    *link = f->hnext;
}

static void turn_unlink(struct sol_queue *q, uint32_t idx)
{
    struct sol_queue_flow *f = &q->flows[idx];
    unsigned lv = (unsigned)f->priority - 1;
    if (f->prev != NIL)
        q->flows[f->prev].next = f->next;
    else
        q->turn_head[lv] = f->next;
    if (f->next != NIL)
        q->flows[f->next].prev = f->prev;
    else
        q->turn_tail[lv] = f->prev;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Starts the flow's turn now and appends it to its priority's turn list. */
static void turn_start(struct sol_queue *q, uint32_t idx)
{
    struct sol_queue_flow *f = &q->flows[idx];
    unsigned lv = (unsigned)f->priority - 1;
    uint64_t levels_below_top = (uint64_t)(SOL_QUEUE_PRIO_MAX - f->priority);
    f->since_ms = q->now_ms;
    f->tick = ++q->tick;
    if (q->conf.aging_ms) {
        uint64_t a = q->conf.aging_ms;
        uint64_t bonus = levels_below_top && a > UINT64_MAX / levels_below_top
                             ? UINT64_MAX
                             : levels_below_top * a;
        f->key = sat_add(f->since_ms, bonus);
    } else {
        f->key = levels_below_top;
    }
    f->prev = q->turn_tail[lv];
    f->next = NIL;
    if (f->prev != NIL)
        q->flows[f->prev].next = idx;
    else
        q->turn_head[lv] = idx;
    q->turn_tail[lv] = idx;
}

/* 1 when flow a is served before flow b. */
static int flow_before(const struct sol_queue_flow *a, const struct sol_queue_flow *b)
{
    if (a->key != b->key)
        return a->key < b->key;
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->tick < b->tick;
}

static void flow_free(struct sol_queue *q, uint32_t idx)
{
    struct sol_queue_flow *f = &q->flows[idx];
    turn_unlink(q, idx);
    hash_unlink(q, idx);
    f->count = 0;
    f->head = f->tail = NULL;
    f->next = q->free_flow;
    q->free_flow = idx;
    q->flows_used--;
}

/* ---- entries ---- */

static int clamp_priority(int p)
{
    if (p < SOL_QUEUE_PRIO_MIN)
        return SOL_QUEUE_PRIO_MIN;
    if (p > SOL_QUEUE_PRIO_MAX)
        return SOL_QUEUE_PRIO_MAX;
    return p;
}

int sol_queue_push(struct sol_queue *q, struct sol_queue_entry *e, uint64_t now_ms)
{
    assert(!e->queued);
    uint64_t now = clock_advance(q, now_ms);
    if (q->length >= q->conf.max_length) {
        q->rejected_total++;
        return -1;
    }
    e->priority = clamp_priority(e->priority);

    uint32_t idx = flow_find(q, e->client_key, e->priority);
    if (idx == NIL) {
        idx = q->free_flow;
        assert(idx != NIL); /* length < max_length = pool size */
        struct sol_queue_flow *f = &q->flows[idx];
        q->free_flow = f->next;
        q->flows_used++;
        f->client_key = e->client_key;
        f->priority = e->priority;
        f->head = f->tail = NULL;
        f->count = 0;
        uint32_t *bucket = &q->buckets[flow_hash(q, e->client_key, e->priority)];
        f->hnext = *bucket;
        *bucket = idx;
        turn_start(q, idx);
    }
    struct sol_queue_flow *f = &q->flows[idx];

    e->flow = idx;
    e->queued = 1;
    e->enqueued_ms = now;
    e->fnext = NULL;
    e->fprev = f->tail;
    if (f->tail)
        f->tail->fnext = e;
    else
        f->head = e;
    f->tail = e;
    f->count++;

    e->anext = NULL;
    e->aprev = q->newest;
    if (q->newest)
        q->newest->anext = e;
    else
        q->oldest = e;
    q->newest = e;

    q->length++;
    q->per_priority[e->priority - 1]++;
    q->enqueued_total++;
    return 0;
}

/* Unlinks e from its flow and the arrival list; returns its flow's index
 * (the flow is left in place, possibly empty). */
static uint32_t entry_unlink(struct sol_queue *q, struct sol_queue_entry *e)
{
    uint32_t idx = e->flow;
    struct sol_queue_flow *f = &q->flows[idx];

    if (e->fprev)
        e->fprev->fnext = e->fnext;
    else
        f->head = e->fnext;
    if (e->fnext)
        e->fnext->fprev = e->fprev;
    else
        f->tail = e->fprev;
    f->count--;

    if (e->aprev)
        e->aprev->anext = e->anext;
    else
        q->oldest = e->anext;
    if (e->anext)
        e->anext->aprev = e->aprev;
    else
        q->newest = e->aprev;

    e->fprev = e->fnext = e->aprev = e->anext = NULL;
    e->queued = 0;
    q->length--;
    q->per_priority[e->priority - 1]--;
    return idx;
}

int sol_queue_remove(struct sol_queue *q, struct sol_queue_entry *e)
{
    if (!e->queued)
        return 0;
    uint32_t idx = entry_unlink(q, e);
    if (q->flows[idx].count == 0)
        flow_free(q, idx);
    q->removed_total++;
    return 1;
}

void sol_queue_dispatch(struct sol_queue *q, struct sol_queue_entry *e, uint64_t now_ms)
{
    assert(e->queued);
    clock_advance(q, now_ms);
    uint32_t idx = entry_unlink(q, e);
    if (q->flows[idx].count == 0) {
        flow_free(q, idx);
    } else {
        turn_unlink(q, idx);
        turn_start(q, idx);
    }
    q->dispatched_total++;
}

struct sol_queue_entry *sol_queue_peek_for(const struct sol_queue *q, sol_queue_pred_fn *can_run,
                                           void *ud)
{
    uint32_t cur[SOL_QUEUE_LEVELS];
    memcpy(cur, q->turn_head, sizeof cur);
    for (;;) {
        /* the next flow in dispatch order: the best of the list cursors */
        uint32_t best = NIL;
        unsigned best_lv = 0;
        for (unsigned lv = 0; lv < SOL_QUEUE_LEVELS; lv++) {
            uint32_t i = cur[lv];
            if (i != NIL && (best == NIL || flow_before(&q->flows[i], &q->flows[best]))) {
                best = i;
                best_lv = lv;
            }
        }
        if (best == NIL)
            return NULL;
        const struct sol_queue_flow *f = &q->flows[best];
        if (!can_run)
            return f->head;
        for (struct sol_queue_entry *e = f->head; e; e = e->fnext)
            if (can_run(e, ud))
                return e;
        cur[best_lv] = f->next;
    }
}

struct sol_queue_entry *sol_queue_pop_for(struct sol_queue *q, uint64_t now_ms,
                                          sol_queue_pred_fn *can_run, void *ud)
{
    struct sol_queue_entry *e = sol_queue_peek_for(q, can_run, ud);
    if (e)
        sol_queue_dispatch(q, e, now_ms);
    else
        clock_advance(q, now_ms);
    return e;
}

size_t sol_queue_expire(struct sol_queue *q, uint64_t now_ms, sol_queue_expired_fn *on_expired,
                        void *ud)
{
    uint64_t now = clock_advance(q, now_ms);
    size_t n = 0;
    if (!q->conf.max_wait_ms)
        return 0;
    struct sol_queue_entry *e;
    /* enqueued_ms never exceeds the clock, so the subtraction is safe */
    while ((e = q->oldest) && now - e->enqueued_ms >= q->conf.max_wait_ms) {
        uint32_t idx = entry_unlink(q, e);
        if (q->flows[idx].count == 0)
            flow_free(q, idx);
        q->expired_total++;
        n++;
        if (on_expired)
            on_expired(e, ud);
    }
    return n;
}

uint64_t sol_queue_next_expiry(const struct sol_queue *q)
{
    if (!q->oldest || !q->conf.max_wait_ms)
        return SOL_QUEUE_NEVER;
    return sat_add(q->oldest->enqueued_ms, q->conf.max_wait_ms);
}

struct sol_queue_entry *sol_queue_oldest(const struct sol_queue *q)
{
    return q->oldest;
}

size_t sol_queue_length(const struct sol_queue *q)
{
    return q->length;
}

void sol_queue_stats(const struct sol_queue *q, uint64_t now_ms, struct sol_queue_stats *s)
{
    uint64_t now = now_ms > q->now_ms ? now_ms : q->now_ms;
    memset(s, 0, sizeof *s);
    s->length = q->length;
    for (unsigned i = 0; i < SOL_QUEUE_LEVELS; i++)
        s->per_priority[i + 1] = q->per_priority[i];
    s->flows = q->flows_used;
    s->oldest_wait_ms = q->oldest ? now - q->oldest->enqueued_ms : 0;
    s->enqueued_total = q->enqueued_total;
    s->dispatched_total = q->dispatched_total;
    s->expired_total = q->expired_total;
    s->rejected_total = q->rejected_total;
    s->removed_total = q->removed_total;
}
