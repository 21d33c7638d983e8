/*
 * test_embed_merge.c - the pure parts of distributed embedding batches
 * (sollol/embed_plan.h): chunk planning, cutting the input array, chunk bodies,
 * parsing the nodes' answers and merging them back in input order.
 */
#include "check.h"

#include "base/embed_plan.h"
#include "sollol/json_scan.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static struct sol_embed_plan_chunk plan[SOL_EMBED_MAX_CHUNKS];

/* Chunks are contiguous, in order, non-empty and cover [0, n). */
static int plan_covers(const struct sol_embed_plan_chunk *c, unsigned k, size_t n)
{
    size_t next = 0;
    for (unsigned i = 0; i < k; i++) {
        if (c[i].start != next || c[i].count == 0)
            return 0;
        next += c[i].count;
    }
    return next == n;
}

static size_t node_share(const struct sol_embed_plan_chunk *c, unsigned k, unsigned node)
{
    size_t s = 0;
    for (unsigned i = 0; i < k; i++)
        if (c[i].node == node)
            s += c[i].count;
    return s;
}

static unsigned node_chunks(const struct sol_embed_plan_chunk *c, unsigned k, unsigned node)
{
    unsigned s = 0;
    for (unsigned i = 0; i < k; i++)
        s += c[i].node == node;
    return s;
}

static void test_plan(void)
{
    /* Proportional to the learned speeds. */
    struct sol_embed_plan_node a[] = {{100, 1}, {200, 1}, {100, 1}};
    unsigned k = sol_embed_plan(a, 3, 400, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 3, "k=%u", k);
    CHECK(plan_covers(plan, k, 400), "covers");
    CHECK(plan[0].node == 0 && plan[0].count == 100, "%u %zu", plan[0].node, plan[0].count);
    CHECK(plan[1].node == 1 && plan[1].count == 200, "%u %zu", plan[1].node, plan[1].count);
    CHECK(plan[2].node == 2 && plan[2].count == 100, "%u %zu", plan[2].node, plan[2].count);

    /* Unknown speeds everywhere: equal shares, one chunk per free slot. */
    struct sol_embed_plan_node b[] = {{0, 4}, {0, 4}, {0, 4}};
    k = sol_embed_plan(b, 3, 10000, SOL_EMBED_MIN_CHUNK, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 12, "k=%u", k);
    CHECK(plan_covers(plan, k, 10000), "covers");
    for (unsigned i = 0; i < k; i++)
        CHECK(plan[i].count == 833 || plan[i].count == 834, "chunk %u: %zu", i, plan[i].count);
    for (unsigned n = 0; n < 3; n++)
        CHECK(node_chunks(plan, k, n) == 4, "node %u: %u chunks", n, node_chunks(plan, k, n));

    /* Free slots count: a node with twice the free slots gets twice the
     * inputs; a saturated node none. */
    struct sol_embed_plan_node c[] = {{50, 4}, {50, 2}, {50, 0}};
    k = sol_embed_plan(c, 3, 600, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 6, "k=%u", k);
    CHECK(plan_covers(plan, k, 600), "covers");
    CHECK(node_share(plan, k, 0) == 400, "%zu", node_share(plan, k, 0));
    CHECK(node_share(plan, k, 1) == 200, "%zu", node_share(plan, k, 1));
    CHECK(node_share(plan, k, 2) == 0, "%zu", node_share(plan, k, 2));

    /* Speed and slots together: 2 slots x 300 vs 1 slot x 600... equal. */
    struct sol_embed_plan_node c2[] = {{300, 2}, {600, 1}};
    k = sol_embed_plan(c2, 2, 1000, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 3 && node_share(plan, k, 0) == 500 && node_share(plan, k, 1) == 500, "k=%u %zu %zu",
          k, node_share(plan, k, 0), node_share(plan, k, 1));

    /* An unmeasured node counts at the mean of the measured ones (200):
     * 300:200:100 of 800 is 400, 266.7, 133.3; the largest remainder
     * gets the last input. */
    struct sol_embed_plan_node d[] = {{300, 1}, {0, 1}, {100, 1}};
    k = sol_embed_plan(d, 3, 800, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 3 && node_share(plan, k, 0) == 400 && node_share(plan, k, 1) == 267 &&
              node_share(plan, k, 2) == 133,
          "k=%u %zu %zu %zu", k, node_share(plan, k, 0), node_share(plan, k, 1),
          node_share(plan, k, 2));

    /* One input: one chunk. */
    k = sol_embed_plan(b, 3, 1, SOL_EMBED_MIN_CHUNK, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 1 && plan[0].start == 0 && plan[0].count == 1, "k=%u", k);
    k = sol_embed_plan(b, 3, 1, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 1 && plan[0].count == 1, "k=%u", k);

    /* More nodes than inputs: one input per chunk, on different nodes. */
    struct sol_embed_plan_node e[] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}, {0, 1}};
    k = sol_embed_plan(e, 5, 2, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 2, "k=%u", k);
    CHECK(plan_covers(plan, k, 2), "covers");
    CHECK(k == 2 && plan[0].node != plan[1].node, "same node");
    k = sol_embed_plan(b, 3, 5, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 5 && plan_covers(plan, k, 5), "k=%u", k);
    for (unsigned n = 0; n < 3; n++)
        CHECK(node_chunks(plan, k, n) >= 1, "node %u unused", n);

    /* Empty array, no node: nothing to plan (the node answers Ollama's
     * {"model":...,"embeddings":[]} itself: the request is not split). */
    CHECK(sol_embed_plan(b, 3, 0, 1, plan, SOL_EMBED_MAX_CHUNKS) == 0, "empty");
    CHECK(sol_embed_plan(b, 0, 10, 1, plan, SOL_EMBED_MAX_CHUNKS) == 0, "no node");

    /* Every node saturated: one lane each (the nodes queue the chunks). */
    struct sol_embed_plan_node f[] = {{0, 0}, {0, 0}, {0, 0}};
    k = sol_embed_plan(f, 3, 90, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 3 && plan[0].count == 30 && plan[1].count == 30 && plan[2].count == 30, "k=%u", k);

    /* min_chunk caps the lanes, and the remaining lanes stay spread. */
    k = sol_embed_plan(b, 3, 64, 16, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 4 && plan_covers(plan, k, 64), "k=%u", k);
    for (unsigned n = 0; n < 3; n++)
        CHECK(node_chunks(plan, k, n) >= 1, "node %u unused", n);
    /* Below 2 x min_chunk the batch is one chunk: the caller sends it whole. */
    k = sol_embed_plan(b, 3, 31, 16, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 2, "k=%u", k);
    k = sol_embed_plan(b, 3, 16, 16, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 1, "k=%u", k);

    /* A node far slower than the others may end up with nothing. */
    struct sol_embed_plan_node g[] = {{1000, 1}, {1, 1}};
    k = sol_embed_plan(g, 2, 10, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 1 && plan[0].node == 0 && plan[0].count == 10, "k=%u", k);

    /* out_cap bounds the chunks. */
    struct sol_embed_plan_node h[] = {{0, 200}, {0, 200}, {0, 200}};
    k = sol_embed_plan(h, 3, 100000, 1, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == SOL_EMBED_MAX_CHUNKS && plan_covers(plan, k, 100000), "k=%u", k);
    k = sol_embed_plan(h, 3, 100000, 1, plan, 7);
    CHECK(k == 7 && plan_covers(plan, k, 100000), "k=%u", k);
}

struct find_input {
    struct sol_json_span input;
};

static int on_member(void *ud, const struct sol_json_span *key, const struct sol_json_span *v)
{
    struct find_input *f = ud;
    if (sol_json_key_equals(key, "input"))
        f->input = *v;
    return 0;
}

static struct sol_json_span input_of(const char *body)
{
    struct find_input f = {{0}};
    char err[128];
    int rc = sol_json_scan_object(body, strlen(body), 32, on_member, &f, err, sizeof err);
    CHECK(rc == SOL_JSON_OK, "%s", err);
    return f.input;
}

static void test_inputs_and_bodies(void)
{
    int all;
    struct sol_json_span in = input_of("{\"input\":[\"a\",\"b\",1]}");
    CHECK(sol_embed_count_inputs(&in, &all) == 3 && all == 0, "mixed");
    in = input_of("{\"input\":[]}");
    CHECK(sol_embed_count_inputs(&in, &all) == 0 && all == 1, "empty");
    in = input_of("{\"input\":[ \"x\" ,\n\"y\" ]}");
    CHECK(sol_embed_count_inputs(&in, &all) == 2 && all == 1, "spaces");

    const char *body = "{\"model\":\"m\",\"input\":[\"a\", \"b\\\"c\" ,\"d\"],\"truncate\":true,"
                       "\"dimensions\":4,\"keep_alive\":\"5m\",\"options\":{\"x\":[1,2]}}";
    in = input_of(body);
    struct sol_embed_plan_chunk cuts[] = {{0, 0, 2}, {1, 2, 1}};
    struct sol_json_span slices[2];
    CHECK(sol_embed_slices(&in, cuts, 2, slices) == 0, "slices");
    CHECK(slices[0].len == strlen("\"a\", \"b\\\"c\"") &&
              memcmp(slices[0].p, "\"a\", \"b\\\"c\"", slices[0].len) == 0,
          "%.*s", (int)slices[0].len, slices[0].p);
    CHECK(slices[1].len == 3 && memcmp(slices[1].p, "\"d\"", 3) == 0, "%.*s", (int)slices[1].len,
          slices[1].p);
    struct sol_buf out = {0};
    CHECK(sol_embed_chunk_body(&out, body, strlen(body), &in, &slices[0]) == 0, "body");
    const char *want0 = "{\"model\":\"m\",\"input\":[\"a\", \"b\\\"c\"],\"truncate\":true,"
                        "\"dimensions\":4,\"keep_alive\":\"5m\",\"options\":{\"x\":[1,2]}}";
    CHECK(out.len == strlen(want0) && memcmp(out.data, want0, out.len) == 0, "%.*s", (int)out.len,
          out.data);
    sol_buf_clear(&out);
    CHECK(sol_embed_chunk_body(&out, body, strlen(body), &in, &slices[1]) == 0, "body");
    const char *want1 = "{\"model\":\"m\",\"input\":[\"d\"],\"truncate\":true,"
                        "\"dimensions\":4,\"keep_alive\":\"5m\",\"options\":{\"x\":[1,2]}}";
    CHECK(out.len == strlen(want1) && memcmp(out.data, want1, out.len) == 0, "%.*s", (int)out.len,
          out.data);
    sol_buf_free(&out);

    /* Chunks past the end of the array are refused. */
    struct sol_embed_plan_chunk past[] = {{0, 0, 2}, {0, 2, 2}};
    CHECK(sol_embed_slices(&in, past, 2, slices) < 0, "past the end");
}

static void test_parse_answer(void)
{
    char err[160];
    struct sol_embed_piece p;
    char a[] = "{\"model\":\"m\",\"embeddings\":[[0.1,0.2],[0.3,-0.4]],"
               "\"total_duration\":900,\"load_duration\":70,\"prompt_eval_count\":8}";
    long n = sol_embed_parse_answer(a, strlen(a), 2, &p, err, sizeof err);
    CHECK(n == (long)strlen("[0.1,0.2],[0.3,-0.4]"), "n=%ld %s", n, err);
    CHECK(n > 0 && memcmp(p.text, "[0.1,0.2],[0.3,-0.4]", (size_t)n) == 0, "%.*s", (int)n, a);
    CHECK(p.count == 2 && p.load_duration == 70 && p.prompt_eval_count == 8 &&
              p.total_duration == 900,
          "metrics");

    char pretty[] = "{\n  \"embeddings\" : [\n    [1] ,\n    [2]\n  ]\n}\n";
    n = sol_embed_parse_answer(pretty, strlen(pretty), 2, &p, err, sizeof err);
    CHECK(n > 0 && memcmp(p.text, "[1] ,\n    [2]", (size_t)n) == 0, "%s", err);
    CHECK(p.load_duration == 0 && p.prompt_eval_count == 0, "absent metrics are 0");

    char fewer[] = "{\"embeddings\":[[1]]}";
    CHECK(sol_embed_parse_answer(fewer, strlen(fewer), 2, &p, err, sizeof err) < 0 &&
              strstr(err, "1 embeddings for 2 inputs"),
          "%s", err);
    char broken[] = "{\"embeddings\":[[1],[2]]";
    CHECK(sol_embed_parse_answer(broken, strlen(broken), 2, &p, err, sizeof err) < 0 &&
              strstr(err, "invalid JSON"),
          "%s", err);
    char none[] = "{\"error\":\"x\"}";
    CHECK(sol_embed_parse_answer(none, strlen(none), 1, &p, err, sizeof err) < 0, "no array");
    char flat[] = "{\"embeddings\":[1,2]}";
    CHECK(sol_embed_parse_answer(flat, strlen(flat), 2, &p, err, sizeof err) < 0, "flat");
}

static void test_merge_shapes(void)
{
    struct sol_buf out = {0};
    CHECK(sol_embed_merge(&out, "nomic-embed-text", NULL, 0, 5) == 0, "merge");
    const char *empty = "{\"model\":\"nomic-embed-text\",\"embeddings\":[]}";
    CHECK(out.len == strlen(empty) && memcmp(out.data, empty, out.len) == 0, "%.*s", (int)out.len,
          out.data);
    sol_buf_clear(&out);

    struct sol_embed_piece pieces[2] = {{"[1]", 3, 1, 10, 3, 100}, {"[2],[3]", 7, 2, 30, 4, 90}};
    CHECK(sol_embed_merge(&out, "we\"ird", pieces, 2, 1234) == 0, "merge");
    const char *want = "{\"model\":\"we\\\"ird\",\"embeddings\":[[1],[2],[3]],"
                       "\"total_duration\":1234,\"load_duration\":30,\"prompt_eval_count\":7}";
    CHECK(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0, "%.*s", (int)out.len,
          out.data);
    sol_buf_free(&out);
}

/*
 * The whole pipeline on fake nodes: 1000 inputs "t<i>", planned over three
 * nodes of different speeds, cut into chunk bodies; each "node" answers
 * embedding [i] for input "t<i>"; the answers are parsed in an order that
 * is not the input order; the merge must list [0], [1], ... [999].
 */
static void test_order_restored(void)
{
    enum { N = 1000 };
    struct sol_buf body = {0};
    sol_buf_append_str(&body, "{\"model\":\"m\",\"input\":[");
    for (int i = 0; i < N; i++)
        sol_buf_appendf(&body, "%s\"t%d\"", i ? "," : "", i);
    sol_buf_append_str(&body, "],\"dimensions\":1}");
    struct sol_json_span in = input_of(sol_buf_cstr(&body));
    int all;
    CHECK(sol_embed_count_inputs(&in, &all) == N && all, "count");

    struct sol_embed_plan_node nodes[] = {{500, 2}, {1500, 1}, {0, 3}};
    unsigned k = sol_embed_plan(nodes, 3, N, 16, plan, SOL_EMBED_MAX_CHUNKS);
    CHECK(k == 6 && plan_covers(plan, k, N), "k=%u", k);
    struct sol_json_span slices[SOL_EMBED_MAX_CHUNKS];
    CHECK(sol_embed_slices(&in, plan, k, slices) == 0, "slices");

    struct sol_buf answers[SOL_EMBED_MAX_CHUNKS];
    memset(answers, 0, sizeof answers);
    for (unsigned c = 0; c < k; c++) {
        /* The node's view: parse the chunk body, answer per input. */
        struct sol_buf req = {0};
        CHECK(sol_embed_chunk_body(&req, body.data, body.len, &in, &slices[c]) == 0, "body");
        cJSON *doc = cJSON_ParseWithLength(req.data, req.len);
        CHECK(doc != NULL, "chunk body %u is JSON", c);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "input");
        CHECK(cJSON_GetArraySize(arr) == (int)plan[c].count, "chunk %u size", c);
        CHECK(cJSON_GetObjectItemCaseSensitive(doc, "dimensions") != NULL, "dimensions kept");
        sol_buf_append_str(&answers[c], "{\"model\":\"m\",\"embeddings\":[");
        const cJSON *it;
        int first = 1;
        cJSON_ArrayForEach(it, arr)
        {
            sol_buf_appendf(&answers[c], "%s[%s]", first ? "" : ",", it->valuestring + 1);
            first = 0;
        }
        sol_buf_appendf(&answers[c],
                        "],\"total_duration\":1,\"load_duration\":%u,\"prompt_eval_count\":%zu}",
                        c * 10, plan[c].count);
        cJSON_Delete(doc);
        sol_buf_free(&req);
    }
    /* Complete out of order: last first, then the even ones, then the odd. */
    struct sol_embed_piece pieces[SOL_EMBED_MAX_CHUNKS];
    unsigned order[SOL_EMBED_MAX_CHUNKS], n_order = 0;
    order[n_order++] = k - 1;
    for (unsigned c = 0; c + 1 < k; c += 2)
        order[n_order++] = c;
    for (unsigned c = 1; c + 1 < k; c += 2)
        order[n_order++] = c;
    CHECK(n_order == k, "order");
    for (unsigned i = 0; i < n_order; i++) {
        unsigned c = order[i];
        char err[160];
        long len = sol_embed_parse_answer(answers[c].data, answers[c].len, plan[c].count,
                                          &pieces[c], err, sizeof err);
        CHECK(len >= 0, "chunk %u: %s", c, err);
    }
    struct sol_buf out = {0};
    CHECK(sol_embed_merge(&out, "m", pieces, k, 42) == 0, "merge");
    cJSON *merged = cJSON_ParseWithLength(out.data, out.len);
    CHECK(merged != NULL, "merged is JSON");
    const cJSON *emb = cJSON_GetObjectItemCaseSensitive(merged, "embeddings");
    CHECK(cJSON_GetArraySize(emb) == N, "%d embeddings", cJSON_GetArraySize(emb));
    int in_order = 1;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, emb)
    {
        if (cJSON_GetArraySize(it) != 1 || cJSON_GetArrayItem(it, 0)->valueint != i)
            in_order = 0;
        i++;
    }
    CHECK(in_order, "embeddings in input order");
    CHECK(cJSON_GetObjectItemCaseSensitive(merged, "prompt_eval_count")->valueint == N, "sum");
    CHECK(cJSON_GetObjectItemCaseSensitive(merged, "load_duration")->valueint == (int)(k - 1) * 10,
          "max");
    CHECK(cJSON_GetObjectItemCaseSensitive(merged, "total_duration")->valueint == 42, "total");
    const cJSON *first = merged ? merged->child : NULL;
    CHECK(first && strcmp(first->string, "model") == 0 && first->next &&
              strcmp(first->next->string, "embeddings") == 0,
          "Ollama's field order");
    cJSON_Delete(merged);
    sol_buf_free(&out);
    for (unsigned c = 0; c < k; c++)
        sol_buf_free(&answers[c]);
    sol_buf_free(&body);
}

int main(void)
{
    test_plan();
    test_inputs_and_bodies();
    test_parse_answer();
    test_merge_shapes();
    test_order_restored();
    return check_summary();
}
