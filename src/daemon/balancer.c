#include "sollol/balancer.h"

#include "sollol/log.h"

#include <uv.h>

static uint64_t loop_clock_ms(void)
{
    return uv_hrtime() / 1000000u;
}

void sol_balancer_init(struct sol_balancer *b, struct sol_node_table *table)
{
    b->table = table;
    b->rr_next = 0;
    b->fail_threshold = 3;
    b->down_ms = 1000;
    b->now_ms = loop_clock_ms;
}

int sol_tried_has(const struct sol_tried *t, unsigned index)
{
    for (unsigned i = 0; t && i < t->count; i++)
        if (t->index[i] == index)
            return 1;
    return 0;
}

/* A DOWN node becomes eligible for one trial once its rest is over. */
static int routable(const struct sol_node *n, uint64_t now)
{
    switch (n->state) {
    case SOL_NODE_UP:
        return 1;
    case SOL_NODE_DOWN:
        return now >= n->breaker.open_until_ms;
    default:
        return 0;
    }
}

struct sol_node *sol_balancer_get(struct sol_balancer *b, const struct sol_pick *pick)
{
    unsigned count = b->table->count;
    uint64_t now = b->now_ms();
    for (unsigned step = 0; step < count; step++) {
        unsigned i = (b->rr_next + step) % count;
        struct sol_node *n = b->table->nodes[i];
        if (sol_tried_has(pick->tried, n->index) || !routable(n, now))
            continue;
        b->rr_next = (i + 1) % count;
        n->in_flight++;
        n->requests_total++;
        return n;
    }
    return NULL;
}

void sol_balancer_put(struct sol_balancer *b, struct sol_node *n, enum sol_attempt_result r)
{
    n->in_flight--;
    switch (r) {
    case SOL_ATTEMPT_OK:
        if (n->state != SOL_NODE_UP)
            SOL_INFO("node %s is up again", n->name);
        n->state = SOL_NODE_UP;
        n->breaker.consecutive_failures = 0;
        break;
    case SOL_ATTEMPT_CANCELLED:
        break;
    case SOL_ATTEMPT_AUTH_REJECTED:
        n->failures_total++;
        if (n->state != SOL_NODE_MISCONFIGURED)
            SOL_ERROR("node %s rejected our credentials (401/403): not routable until the "
                      "config is fixed",
                      n->name);
        n->state = SOL_NODE_MISCONFIGURED;
        break;
    default:
        n->failures_total++;
        n->breaker.consecutive_failures++;
        if (n->breaker.consecutive_failures >= b->fail_threshold || n->state == SOL_NODE_DOWN) {
            if (n->state != SOL_NODE_DOWN)
                SOL_WARN("node %s is down after %u consecutive failures", n->name,
                         n->breaker.consecutive_failures);
            n->state = SOL_NODE_DOWN;
            n->breaker.open_until_ms = b->now_ms() + b->down_ms;
        }
        break;
    }
}
