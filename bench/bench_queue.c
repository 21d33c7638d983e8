/*
 * bench_queue - nanoseconds per admission-queue push and pop.
 *
 * Queues of max_length L (16 and 1024; default aging, no expiry), held
 * around length L: each round pushes L/2 entries into each queue (length
 * L/2 -> L) then pops L/2 from each (L -> L/2); the push blocks and the
 * pop blocks are timed separately. A steady loop of push+pop pairs at
 * length L is timed as a cross-check. So that a timed block holds enough
 * operations for the clock's own cost (up to ~1 us here) to vanish, 1024/L
 * queues are used side by side (64 queues at L = 16, one at 1024). Thread
 * CPU time, as bench_scorer, so that preemption by other processes does
 * not count. Client mixes: every entry from one client; every entry
 * from a new client (one flow per entry); 64 clients with random
 * priorities 1..10. Each entry wants one of 10 models. Pops:
 *  - without a predicate;
 *  - "node lacks 1 of 10": the freed node is one of 10 kinds, kind k
 *    lacking model k, so every entry can run on 9 kinds in 10 (the common
 *    case: the predicate accepts most entries);
 *  - "backlog, node has 1 of 10": every freed node has model 0 only, and
 *    when it can run nothing the oldest entry is dispatched (as if another
 *    node took it). Entries for the other models pile up ahead in
 *    dispatch order and are asked again at every pop: the predicate's
 *    worst case, O(entries ahead).
 * The fake clock advances 1 ms per operation. Prints the median of
 * several runs.
 *
 * Usage: bench_queue [runs]   (default 7). Not a test: build with -O2.
 */
#include "base/queue.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

struct item {
    struct sol_queue_entry qe;
    unsigned model;
};

enum mix { ONE_CLIENT, NEW_CLIENTS, MIXED };

/* One queue with its own entries. */
struct lane {
    struct sol_queue q;
    struct item *items;
    struct item **free_items;
    unsigned n_free;
    uint64_t clock;
    unsigned long pops;
};

struct bench {
    struct lane *lanes;
    unsigned n_lanes, len;
    enum mix mix;
    int use_pred;         /* 0: none; 1: accept_mask; 2: a node of kind (pops % 10) */
    unsigned accept_mask; /* models the node has (of 10) */
    uint64_t next_client;
};

struct pred_ctx {
    const struct bench *b;
    const struct lane *l;
};

static int has_model(const struct sol_queue_entry *e, void *ud)
{
    const struct pred_ctx *c = ud;
    const struct item *it = (const struct item *)((const char *)e - offsetof(struct item, qe));
    if (c->b->use_pred == 2)
        return it->model != c->l->pops % 10;
    return (c->b->accept_mask >> it->model) & 1u;
}

static void push_one(struct bench *b, struct lane *l)
{
    struct item *it = l->free_items[--l->n_free];
    uint64_t client;
    int prio = SOL_QUEUE_PRIO_DEFAULT;
    switch (b->mix) {
    case ONE_CLIENT:
        client = 1;
        break;
    case NEW_CLIENTS:
        client = b->next_client++;
        break;
    default:
        client = rnd() % 64;
        prio = 1 + (int)(rnd() % 10);
        break;
    }
    sol_queue_entry_init(&it->qe, client, prio);
    it->model = (unsigned)(rnd() % 10);
    if (sol_queue_push(&l->q, &it->qe, ++l->clock) != 0)
        abort();
}

/* Pops one entry; when the predicate accepts none, the oldest is
 * dispatched instead (another node took it) so the length stays as
 * planned. */
static void pop_one(struct bench *b, struct lane *l)
{
    struct pred_ctx c = {b, l};
    l->pops++;
    struct sol_queue_entry *e =
        sol_queue_pop_for(&l->q, ++l->clock, b->use_pred ? has_model : NULL, &c);
    if (!e) {
        e = sol_queue_oldest(&l->q);
        sol_queue_dispatch(&l->q, e, l->clock);
    }
    l->free_items[l->n_free++] = (struct item *)((char *)e - offsetof(struct item, qe));
}

static void setup(struct bench *b, unsigned len, enum mix mix, int use_pred, unsigned mask)
{
    struct sol_queue_conf c;
    sol_queue_conf_defaults(&c);
    c.max_length = len;
    c.max_wait_ms = 0; /* the fake clock runs fast: no expiry during the run */
    b->len = len;
    b->n_lanes = len >= 1024 ? 1 : 1024 / len;
    b->lanes = calloc(b->n_lanes, sizeof *b->lanes);
    if (!b->lanes)
        abort();
    for (unsigned k = 0; k < b->n_lanes; k++) {
        struct lane *l = &b->lanes[k];
        l->items = calloc(len, sizeof *l->items);
        l->free_items = calloc(len, sizeof *l->free_items);
        if (!l->items || !l->free_items || sol_queue_init(&l->q, &c) != 0)
            abort();
        for (unsigned i = 0; i < len; i++)
            l->free_items[l->n_free++] = &l->items[i];
    }
    b->mix = mix;
    b->use_pred = use_pred;
    b->accept_mask = mask;
    b->next_client = 1000;
}

static void teardown(struct bench *b)
{
    for (unsigned k = 0; k < b->n_lanes; k++) {
        sol_queue_destroy(&b->lanes[k].q);
        free(b->lanes[k].items);
        free(b->lanes[k].free_items);
    }
    free(b->lanes);
}

struct result {
    double push, pop, pair;
};

/* One run: about `ops` pushes and as many pops, in rounds. */
static struct result run(struct bench *b, unsigned long ops)
{
    unsigned half = b->len / 2;
    for (unsigned k = 0; k < b->n_lanes; k++)
        while (sol_queue_length(&b->lanes[k].q) > half)
            pop_one(b, &b->lanes[k]);
    for (unsigned k = 0; k < b->n_lanes; k++)
        while (sol_queue_length(&b->lanes[k].q) < half)
            push_one(b, &b->lanes[k]);
    double t_push = 0, t_pop = 0;
    unsigned long done = 0;
    while (done < ops) {
        double t0 = now_ns();
        for (unsigned k = 0; k < b->n_lanes; k++)
            for (unsigned i = 0; i < half; i++)
                push_one(b, &b->lanes[k]);
        double t1 = now_ns();
        for (unsigned k = 0; k < b->n_lanes; k++)
            for (unsigned i = 0; i < half; i++)
                pop_one(b, &b->lanes[k]);
        double t2 = now_ns();
        t_push += t1 - t0;
        t_pop += t2 - t1;
        done += (unsigned long)half * b->n_lanes;
    }
    /* steady pairs at length len */
    for (unsigned k = 0; k < b->n_lanes; k++)
        while (sol_queue_length(&b->lanes[k].q) < b->len - 1)
            push_one(b, &b->lanes[k]);
    double t0 = now_ns();
    for (unsigned long i = 0; i < ops; i++) {
        struct lane *l = &b->lanes[i % b->n_lanes];
        push_one(b, l);
        pop_one(b, l);
    }
    double t1 = now_ns();
    struct result r = {t_push / (double)done, t_pop / (double)done, (t1 - t0) / (double)ops};
    return r;
}

static struct bench bench;

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;
    if (runs > 64)
        runs = 64;
    static const struct {
        const char *name;
        enum mix mix;
        int use_pred;
        unsigned mask;
        unsigned long ops; /* per run */
    } cases[] = {
        {"1 client", ONE_CLIENT, 0, 0x3ff, 1000000},
        {"new client each", NEW_CLIENTS, 0, 0x3ff, 1000000},
        {"64 clients, prio 1-10", MIXED, 0, 0x3ff, 1000000},
        {"  node lacks 1 of 10", MIXED, 2, 0, 1000000},
        {"  backlog, node has 1/10", MIXED, 1, 0x001, 20000},
    };
    static const unsigned lens[] = {16, 1024};

    printf("sol_queue: ns per operation (thread CPU time), median of %d runs\n", runs);
    printf("%-26s %6s %10s %10s %14s\n", "mix", "length", "push ns", "pop ns", "push+pop ns");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            double push[64], pop[64], pair[64];
            unsigned long ops = cases[k].ops;
            setup(&bench, lens[l], cases[k].mix, cases[k].use_pred, cases[k].mask);
            run(&bench, ops / 10); /* warm up */
            for (int i = 0; i < runs; i++) {
                struct result r = run(&bench, ops);
                push[i] = r.push;
                pop[i] = r.pop;
                pair[i] = r.pair;
            }
            teardown(&bench);
            qsort(push, (size_t)runs, sizeof push[0], cmp_double);
            qsort(pop, (size_t)runs, sizeof pop[0], cmp_double);
            qsort(pair, (size_t)runs, sizeof pair[0], cmp_double);
            printf("%-26s %6u %10.1f %10.1f %14.1f\n", cases[k].name, lens[l], push[runs / 2],
                   pop[runs / 2], pair[runs / 2]);
        }
    }
    return 0;
}
