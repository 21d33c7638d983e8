/*
 * embed_plan.h - distributed embedding batches: the pure parts
 * (embed_plan.c: no I/O, no daemon), shared by embed.c (one /api/embed
 * request split across nodes), batch.c (the background batch-job API) and
 * their unit test.
 *
 * A large `input` array is cut into contiguous chunks; each chunk is sent
 * to a node as an /api/embed request whose body is the client's body with
 * `input` replaced by the chunk's slice of the raw array text (every other
 * member kept byte for byte); the answers' `embeddings` arrays are joined
 * back in input order, whatever order the chunks completed in.
 *
 * Nothing here builds a DOM: the input array and the answers are read with
 * json_scan spans.
 */
#ifndef SOLLOL_EMBED_PLAN_H
#define SOLLOL_EMBED_PLAN_H

#include "sollol/buf.h"
#include "sollol/json_scan.h"

#include <stddef.h>
#include <stdint.h>

/* Most chunks one batch is cut into (lanes over all nodes). */
#define SOL_EMBED_MAX_CHUNKS 256
/* Fewest inputs per chunk of an /api/embed split (a chunk costs one HTTP
 * exchange; below this the exchange costs more than the parallelism wins). */
#define SOL_EMBED_MIN_CHUNK 16
/* Largest total of the nodes' answers one split keeps (the merged response
 * is about as large): past it the request fails instead of growing. */
#define SOL_EMBED_MAX_RESULT_BYTES (512ull << 20)

/* One candidate node as the planner sees it. */
struct sol_embed_plan_node {
    double speed;        /* learned embedding speed (any unit, per slot); <= 0 = unknown */
    unsigned free_slots; /* slots free for this batch now */
};

/* One chunk of the plan: inputs [start, start + count) go to node `node`
 * (an index into the planner's node array). */
struct sol_embed_plan_chunk {
    unsigned node;
    size_t start;
    size_t count;
};

/*
 * Cuts n_inputs into chunks, at most out_cap (<= SOL_EMBED_MAX_CHUNKS):
 *
 *  - each node offers one lane per free slot; when no node has a free slot,
 *    each offers one lane (the chunks then wait in the nodes' own queues);
 *  - a node whose speed is unknown counts at the mean speed of the known
 *    ones (all unknown: equal shares), so it is neither ignored nor flooded;
 *  - lanes are capped at ceil(n_inputs / min_chunk) (and out_cap) by taking
 *    lanes away one at a time from the node that has the most (ties: the
 *    slower, then the later node), which keeps the chunks spread over nodes;
 *  - each lane gets n_inputs * speed / (sum of the lanes' speeds) inputs,
 *    rounded by largest remainder (ties: the earlier lane), so a node's
 *    share is proportional to speed x lanes; lanes left with 0 are dropped;
 *  - chunks are contiguous and in input order: node by node in array order.
 *
 * Returns the number of chunks written (0 when n_inputs or n_nodes is 0).
 */
unsigned sol_embed_plan(const struct sol_embed_plan_node *nodes, unsigned n_nodes, size_t n_inputs,
                        size_t min_chunk, struct sol_embed_plan_chunk *out, unsigned out_cap);

/*
 * Counts the elements of an array span (from a document that passed
 * sol_json_scan_object()). *all_strings is set to 1 when every element is a
 * string (vacuously true for []). Returns the count.
 */
size_t sol_embed_count_inputs(const struct sol_json_span *input, int *all_strings);

/*
 * For chunks in input order (as sol_embed_plan() writes them), finds each
 * chunk's slice of the raw array text: from the first byte of its first
 * element to the last byte of its last element. slices[i] receives chunk
 * i's. Returns 0, or -1 when the array has fewer elements than the chunks
 * cover.
 */
int sol_embed_slices(const struct sol_json_span *input, const struct sol_embed_plan_chunk *chunks,
                     unsigned n, struct sol_json_span *slices);

/*
 * Appends a chunk's request body to out: body with the `input` value (the
 * span `input`, inside body) replaced by "[" slice "]". Returns 0 or -1.
 */
int sol_embed_chunk_body(struct sol_buf *out, const char *body, size_t body_len,
                         const struct sol_json_span *input, const struct sol_json_span *slice);

/* What one chunk's answer contributed, once parsed. */
struct sol_embed_piece {
    const char *text; /* the embeddings array's elements, without the brackets */
    size_t len;
    size_t count; /* embeddings in it */
    uint64_t load_duration;
    uint64_t prompt_eval_count;
    uint64_t total_duration;
};

/*
 * Parses a node's /api/embed answer (an object with "embeddings":[[...],...]
 * and Ollama's metrics) in place: validates it as JSON (max_depth 16),
 * checks that it holds exactly `expect` embeddings, each an array, reads
 * load_duration, prompt_eval_count and total_duration (0 when absent), then
 * moves the elements of the embeddings array to the front of buf. On
 * success returns the new length (piece->text = buf), else -1 with a
 * message in err.
 */
long sol_embed_parse_answer(char *buf, size_t len, size_t expect, struct sol_embed_piece *piece,
                            char *err, size_t errlen);

/*
 * Appends the merged answer in Ollama's shape and field order:
 *   {"model":M,"embeddings":[...],"total_duration":T,"load_duration":L,
 *    "prompt_eval_count":P}
 * with the pieces' embeddings in array order, L the largest load_duration,
 * P the sum of prompt_eval_count and T = total_ns (the daemon's own wall
 * time). With no piece it is Ollama's answer to an empty input:
 * {"model":M,"embeddings":[]}. model is the name as the client spelled it.
 * Returns 0 or -1.
 */
int sol_embed_merge(struct sol_buf *out, const char *model, const struct sol_embed_piece *pieces,
                    unsigned n, uint64_t total_ns);

#endif
