/*
 * embed_plan.c - distributed embedding batches, the pure half (see
 * embed_plan.h): the plan over nodes, the input array's slices, a chunk's
 * body, a node's answer and the merge. No I/O; embed.c runs the plan.
 */
#include "base/embed_plan.h"

#include "sollol/buf.h"
#include "sollol/json_scan.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned sol_embed_plan(const struct sol_embed_plan_node *nodes, unsigned n_nodes, size_t n_inputs,
                        size_t min_chunk, struct sol_embed_plan_chunk *out, unsigned out_cap)
{
    if (n_inputs == 0 || n_nodes == 0 || out_cap == 0)
        return 0;
    if (out_cap > SOL_EMBED_MAX_CHUNKS)
        out_cap = SOL_EMBED_MAX_CHUNKS;
    if (min_chunk == 0)
        min_chunk = 1;

    /* Speeds: unknown ones at the mean of the known ones. */
    double known_sum = 0;
    unsigned known = 0;
    for (unsigned i = 0; i < n_nodes; i++)
        if (nodes[i].speed > 0 && isfinite(nodes[i].speed)) {
            known_sum += nodes[i].speed;
            known++;
        }
    double mean = known ? known_sum / known : 1.0;

    /* Lanes: one per free slot; when no node has one, one per node. */
    unsigned lanes[SOL_EMBED_MAX_CHUNKS];
    unsigned considered = n_nodes < SOL_EMBED_MAX_CHUNKS ? n_nodes : SOL_EMBED_MAX_CHUNKS;
    unsigned long long total = 0;
    for (unsigned i = 0; i < considered; i++) {
        lanes[i] =
            nodes[i].free_slots < SOL_EMBED_MAX_CHUNKS ? nodes[i].free_slots : SOL_EMBED_MAX_CHUNKS;
        total += lanes[i];
    }
    if (total == 0)
        for (unsigned i = 0; i < considered; i++) {
            lanes[i] = 1;
            total++;
        }
    size_t by_size = (n_inputs + min_chunk - 1) / min_chunk;
    unsigned long long cap = by_size < out_cap ? by_size : out_cap;
    if (cap == 0)
        cap = 1;
#define SPEED(i) (nodes[i].speed > 0 && isfinite(nodes[i].speed) ? nodes[i].speed : mean)
    while (total > cap) {
        unsigned pick = 0;
        int have = 0;
        for (unsigned i = 0; i < considered; i++) {
            if (!lanes[i])
                continue;
            if (!have || lanes[i] > lanes[pick] ||
                (lanes[i] == lanes[pick] && SPEED(i) <= SPEED(pick))) {
                pick = i;
                have = 1;
            }
        }
        lanes[pick]--;
        total--;
    }

    /* Sizes: proportional to the lanes' speeds, largest remainder. */
    double wsum = 0;
    for (unsigned i = 0; i < considered; i++)
        wsum += lanes[i] * SPEED(i);
    unsigned n = 0;
    size_t assigned = 0;
    double frac[SOL_EMBED_MAX_CHUNKS];
    for (unsigned i = 0; i < considered; i++) {
        for (unsigned l = 0; l < lanes[i] && n < out_cap; l++) {
            double exact = (double)n_inputs * SPEED(i) / wsum;
            size_t base = (size_t)floor(exact);
            if (base > n_inputs - assigned)
                base = n_inputs - assigned;
            out[n].node = i;
            out[n].count = base;
            frac[n] = exact - (double)base;
            assigned += base;
            n++;
        }
    }
#undef SPEED
    while (assigned < n_inputs) {
        unsigned best = 0;
        for (unsigned k = 1; k < n; k++)
            if (frac[k] > frac[best])
                best = k;
        out[best].count++;
        frac[best] = -1; /* each lane gets at most one extra... */
        assigned++;
        int any = 0;
        for (unsigned k = 0; k < n; k++)
            any |= frac[k] >= 0;
        if (!any) /* ...unless rounding left more than one per lane */
            for (unsigned k = 0; k < n; k++)
                frac[k] = 0;
    }
    /* Drop empty lanes; lay the chunks out in input order. */
    unsigned w = 0;
    size_t start = 0;
    for (unsigned k = 0; k < n; k++) {
        if (!out[k].count)
            continue;
        out[w] = out[k];
        out[w].start = start;
        start += out[w].count;
        w++;
    }
    return w;
}

size_t sol_embed_count_inputs(const struct sol_json_span *input, int *all_strings)
{
    size_t pos = 0, n = 0;
    struct sol_json_span e;
    int strings = 1;
    while (sol_json_array_next(input, &pos, &e)) {
        n++;
        if (e.type != SOL_JSON_STRING)
            strings = 0;
    }
    if (all_strings)
        *all_strings = strings;
    return n;
}

int sol_embed_slices(const struct sol_json_span *input, const struct sol_embed_plan_chunk *chunks,
                     unsigned n, struct sol_json_span *slices)
{
    size_t pos = 0, idx = 0;
    struct sol_json_span e;
    for (unsigned c = 0; c < n; c++) {
        /* Chunks are contiguous: skip to the chunk's first element. */
        const char *first = NULL;
        while (idx < chunks[c].start + chunks[c].count) {
            if (!sol_json_array_next(input, &pos, &e))
                return -1;
            if (idx == chunks[c].start)
                first = e.p;
            idx++;
        }
        if (!first || chunks[c].count == 0)
            return -1;
        slices[c].p = first;
        slices[c].len = (size_t)(e.p + e.len - first);
        slices[c].type = SOL_JSON_ARRAY;
    }
    return 0;
}

int sol_embed_chunk_body(struct sol_buf *out, const char *body, size_t body_len,
                         const struct sol_json_span *input, const struct sol_json_span *slice)
{
    size_t before = (size_t)(input->p - body);
    size_t after_off = before + input->len;
    if (input->p < body || after_off > body_len)
        return -1;
    if (sol_buf_reserve(out, body_len - input->len + slice->len + 2) < 0)
        return -1;
    sol_buf_append(out, body, before);
    sol_buf_append(out, "[", 1);
    sol_buf_append(out, slice->p, slice->len);
    sol_buf_append(out, "]", 1);
    sol_buf_append(out, body + after_off, body_len - after_off);
    return 0;
}

struct answer_scan {
    struct sol_json_span embeddings;
    int have_embeddings;
    uint64_t load, prompt, total;
};

static uint64_t span_u64(const struct sol_json_span *v)
{
    long long x;
    if (v->type == SOL_JSON_NUMBER && sol_json_number_int64(v, &x) == 0 && x > 0)
        return (uint64_t)x;
    return 0;
}

static int on_answer_member(void *ud, const struct sol_json_span *key,
                            const struct sol_json_span *v)
{
    struct answer_scan *a = ud;
    if (sol_json_key_equals(key, "embeddings")) {
        a->embeddings = *v;
        a->have_embeddings = 1;
    } else if (sol_json_key_equals(key, "load_duration")) {
        a->load = span_u64(v);
    } else if (sol_json_key_equals(key, "prompt_eval_count")) {
        a->prompt = span_u64(v);
    } else if (sol_json_key_equals(key, "total_duration")) {
        a->total = span_u64(v);
    }
    return 0;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

long sol_embed_parse_answer(char *buf, size_t len, size_t expect, struct sol_embed_piece *piece,
                            char *err, size_t errlen)
{
    struct answer_scan a = {0};
    char why[160];
    int rc = sol_json_scan_object(buf, len, 16, on_answer_member, &a, why, sizeof why);
    if (rc != SOL_JSON_OK) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (!a.have_embeddings || a.embeddings.type != SOL_JSON_ARRAY) {
        snprintf(err, errlen, "answer has no embeddings array");
        return -1;
    }
    size_t pos = 0, n = 0;
    struct sol_json_span e;
    while (sol_json_array_next(&a.embeddings, &pos, &e)) {
        if (e.type != SOL_JSON_ARRAY) {
            snprintf(err, errlen, "embedding %zu is not an array", n);
            return -1;
        }
        n++;
    }
    if (n != expect) {
        snprintf(err, errlen, "answer has %zu embeddings for %zu inputs", n, expect);
        return -1;
    }
    const char *p = a.embeddings.p + 1, *end = a.embeddings.p + a.embeddings.len - 1;
    while (p < end && is_ws(*p))
        p++;
    while (end > p && is_ws(end[-1]))
        end--;
    size_t inner = (size_t)(end - p);
    memmove(buf, p, inner);
    piece->text = buf;
    piece->len = inner;
    piece->count = n;
    piece->load_duration = a.load;
    piece->prompt_eval_count = a.prompt;
    piece->total_duration = a.total;
    return (long)inner;
}

int sol_embed_merge(struct sol_buf *out, const char *model, const struct sol_embed_piece *pieces,
                    unsigned n, uint64_t total_ns)
{
    size_t need = strlen(model) * 6 + 128;
    for (unsigned i = 0; i < n; i++)
        need += pieces[i].len + 1;
    if (sol_buf_reserve(out, need) < 0)
        return -1;
    uint64_t load = 0, prompt = 0;
    int rc = sol_buf_append_str(out, "{\"model\":");
    rc |= sol_buf_append_json_string(out, model, strlen(model));
    rc |= sol_buf_append_str(out, ",\"embeddings\":[");
    int first = 1;
    for (unsigned i = 0; i < n; i++) {
        if (pieces[i].len) {
            if (!first)
                rc |= sol_buf_append(out, ",", 1);
            rc |= sol_buf_append(out, pieces[i].text, pieces[i].len);
            first = 0;
        }
        if (pieces[i].load_duration > load)
            load = pieces[i].load_duration;
        prompt += pieces[i].prompt_eval_count;
    }
    rc |= sol_buf_append_str(out, "]");
    if (n)
        rc |= sol_buf_appendf(out,
                              ",\"total_duration\":%llu,\"load_duration\":%llu,"
                              "\"prompt_eval_count\":%llu",
                              (unsigned long long)(total_ns ? total_ns : 1),
                              (unsigned long long)load, (unsigned long long)prompt);
    rc |= sol_buf_append_str(out, "}");
    return rc ? -1 : 0;
}
