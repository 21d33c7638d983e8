/*
 * test_request_kinds.c - the request kinds (proxy/request_priv.h) as
 * request.c drives them: each kind's take passes on what is not its own,
 * serves or fails what is, and its running/cancel/free leave nothing
 * behind. Links the proxy floor alone: no daemon, no MHD connection (a
 * request without one is never suspended or resumed), a loop that is only
 * run to close what the test opened.
 */
#include "check.h"

#include "base/config.h"
#include "base/routes.h"
#include "daemon-t.h"
#include "proxy/batch.h"
#include "proxy/coordinator_serve.h"
#include "proxy/embed.h"
#include "proxy/fanout.h"
#include "proxy/request_priv.h"

#include <stdlib.h>
#include <string.h>

static uv_loop_t loop;
static struct sol_config cfg;
static struct sol_daemon d;
static struct sol_node node_up, node_down;
static struct sol_node *nodes[2] = {&node_up, &node_down};

static const struct sol_req_kind *const kinds[] = {&sol_coord_kind, &sol_batch_kind,
                                                   &sol_embed_kind, &sol_fanout_kind};

static void setup(void)
{
    char err[256];
    uv_loop_init(&loop);
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0, "%s", err);
    d.loop = &loop;
    d.cfg = &cfg;
    snprintf(d.id_prefix, sizeof d.id_prefix, "test0000");
    CHECK(sol_curl_uv_init(&d.curl, &loop, 16) == 0, "curl glue");
    /* Port 9 (discard) on loopback: nothing is sent, the transfers are
     * cancelled before the loop ever runs them. */
    node_up.name = "up";
    node_up.base_url = "http://127.0.0.1:9";
    node_up.state = SOL_NODE_UP;
    node_down.name = "down";
    node_down.base_url = "http://127.0.0.1:9";
    node_down.state = SOL_NODE_DOWN;
    node_down.index = 1;
    d.table.nodes = nodes;
    d.table.count = 2;
    d.kinds = kinds;
    d.n_kinds = 4;
}

static void new_request(struct sol_request *r, const char *method, const char *path)
{
    memset(r, 0, sizeof *r);
    r->d = &d;
    r->route = sol_route_find(path);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->upstream_path = strdup(path);
    r->pinned_node = -1;
    r->info.stream = -1; /* absent: the route's default */
    r->state = RS_RECEIVING;
}

/* What request.c's req_free does for the kinds: every kind frees its own. */
static void free_request(struct sol_request *r)
{
    for (unsigned i = 0; i < d.n_kinds; i++)
        if (d.kinds[i]->free)
            d.kinds[i]->free(r);
    free(r->upstream_path);
    sol_buf_free(&r->stream);
    sol_buf_free(&r->body);
}

/* The table's contract: every kind takes; a kind that rides the proxy path
 * has its attempt hooks together; a kind that runs transfers of its own
 * can say so and cancel them. */
static void test_table(void)
{
    for (unsigned i = 0; i < 4; i++) {
        const struct sol_req_kind *k = kinds[i];
        CHECK(k->name && k->take, "%u: a name and a take", i);
        int rides = k->prepare || k->on_headers || k->translating || k->on_body || k->on_done;
        if (rides)
            CHECK(k->prepare && k->on_headers && k->translating && k->on_body && k->on_done,
                  "%s: all attempt hooks or none", k->name);
        CHECK(!k->running == !k->cancel, "%s: running and cancel together", k->name);
    }
    CHECK(sol_coord_kind.prepare && !sol_coord_kind.running, "the sharded path rides");
    CHECK(sol_embed_kind.running && sol_embed_kind.keeps_inputs, "a split runs its own chunks");
    CHECK(sol_fanout_kind.running && sol_fanout_kind.keeps_inputs, "fan-out runs its own legs");
    CHECK(sol_batch_kind.shutdown && !sol_batch_kind.keeps_inputs, "batch jobs end at shutdown");
}

/* A plain proxied request is nobody's: every take passes, every free and
 * cancel is a no-op on it. */
static void test_pass(void)
{
    struct sol_request r;
    new_request(&r, "POST", "/api/chat");
    snprintf(r.model, sizeof r.model, "llama3.2:latest");
    for (unsigned i = 0; i < 4; i++)
        CHECK(kinds[i]->take(&r) == SOL_TAKE_PASS, "%s passes /api/chat", kinds[i]->name);
    CHECK(r.state == RS_RECEIVING && !r.legs && !r.embed && !r.coord, "nothing attached");
    for (unsigned i = 0; i < 4; i++) {
        if (kinds[i]->running)
            CHECK(!kinds[i]->running(&r), "%s: nothing running", kinds[i]->name);
        if (kinds[i]->cancel) {
            kinds[i]->cancel(&r);
            kinds[i]->cancel(&r); /* idempotent */
        }
    }
    /* The sharded path's hooks on a request it does not ride. */
    CURL *e = curl_easy_init();
    sol_coord_kind.prepare(&r, e, &node_up);
    curl_easy_cleanup(e);
    CHECK(!sol_coord_kind.translating(&r), "not translating");
    const char *out = NULL;
    size_t n = 99;
    sol_coord_kind.on_done(&r, &out, &n);
    CHECK(n == 0, "nothing owed");
    free_request(&r);

    /* An /api/embed batch with splitting off goes the proxy path too. */
    new_request(&r, "POST", "/api/embed");
    cfg.embed_split_min_inputs = 0;
    CHECK(sol_embed_kind.take(&r) == SOL_TAKE_PASS, "split off");
    free_request(&r);
}

/* Fan-out: served by legs of its own, one per node that is up; cancelled
 * and freed without the loop running them. */
static void test_fanout(void)
{
    struct sol_request r;
    new_request(&r, "POST", "/api/pull");
    CHECK(r.route && r.route->kind == SOL_ROUTE_FANOUT, "/api/pull fans out");
    CHECK(sol_coord_kind.take(&r) == SOL_TAKE_PASS, "not the sharded path's");
    CHECK(sol_batch_kind.take(&r) == SOL_TAKE_PASS, "not a batch job");
    CHECK(sol_embed_kind.take(&r) == SOL_TAKE_PASS, "not an embedding");
    CHECK(sol_fanout_kind.take(&r) == SOL_TAKE_SERVED, "%s", r.last_error);
    CHECK(r.n_legs == 1 && r.legs_running == 1 && strcmp(r.node_name, "up") == 0,
          "one leg, to the node that is up: %u %s", r.n_legs, r.node_name);
    CHECK(sol_fanout_kind.running(&r), "its leg runs");
    CHECK(r.state == RS_COMMITTED && r.status == 200, "a streamed pull answers at once");
    sol_fanout_kind.cancel(&r);
    CHECK(!sol_fanout_kind.running(&r), "cancelled");
    sol_fanout_kind.cancel(&r);
    free_request(&r);
    CHECK(!r.legs && r.n_legs == 0, "legs freed");

    /* No node up: failed, with the status and reason request.c answers. */
    node_up.state = SOL_NODE_DOWN;
    new_request(&r, "DELETE", "/api/delete");
    CHECK(sol_fanout_kind.take(&r) == SOL_TAKE_FAILED, "no node up");
    CHECK(r.fail_status == 503 && strstr(r.last_error, "no node is up"), "%u %s", r.fail_status,
          r.last_error);
    free_request(&r);
    node_up.state = SOL_NODE_UP;
}

/* Batch jobs: the routes are served at once from the job table; an
 * unknown job fails with 404; shutdown leaves no job. */
static void test_batch(void)
{
    struct sol_request r;
    new_request(&r, "GET", "/api/batch/jobs");
    CHECK(sol_fanout_kind.take(&r) == SOL_TAKE_PASS, "not fan-out");
    CHECK(sol_batch_kind.take(&r) == SOL_TAKE_SERVED, "%s", r.last_error);
    CHECK(r.state == RS_COMMITTED && r.status == 200, "answered: %ld", r.status);
    CHECK(r.stream.data && strncmp(r.stream.data, "{\"jobs\":[]}", r.stream.len) == 0,
          "no job yet: %.*s", (int)r.stream.len, r.stream.data ? r.stream.data : "");
    free_request(&r);

    new_request(&r, "GET", "/api/batch/jobs/nope");
    CHECK(sol_batch_kind.take(&r) == SOL_TAKE_FAILED, "unknown job");
    CHECK(r.fail_status == 404 && strstr(r.last_error, "'nope' not found"), "%u %s", r.fail_status,
          r.last_error);
    free_request(&r);
    sol_batch_kind.shutdown(&d);
}

/* The sharded path off: nothing rides, nothing is attached. */
static void test_coord_off(void)
{
    struct sol_request r;
    new_request(&r, "POST", "/api/generate");
    snprintf(r.model, sizeof r.model, "big:latest");
    d.coord = NULL;
    CHECK(sol_coord_kind.take(&r) == SOL_TAKE_PASS && !r.coord, "no coordinator");
    free_request(&r);
}

static void on_curl_closed(struct sol_curl_uv *cu)
{
    (void)cu;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    setup();
    test_table();
    test_pass();
    test_fanout();
    test_batch();
    test_coord_off();
    sol_curl_uv_close(&d.curl, on_curl_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sol_config_free(&cfg);
    return check_summary();
}
