/*
 * affinity.h - prefix affinity: send a conversation's next turn to the node
 * that holds its KV cache.
 *
 * Ollama keeps the KV cache of the last prompt a slot served. A follow-up
 * turn sent to that node prefills only the new tail; sent elsewhere it
 * recomputes the whole conversation (users measured 360 ms vs 3,550 ms of
 * prompt time). This module names conversation prefixes with 64-bit keys,
 * remembers which node served which prefix, and otherwise picks a node by
 * rendezvous hashing so that several daemons in front of the same nodes
 * agree without sharing state. Its answer goes into
 * struct sol_score_req.affinity_node; the scorer then discounts that node's
 * prompt time, so the request goes there unless the node is much worse.
 *
 * ## The three keys of a request
 *
 * Every keyed request gets (struct sol_affinity_keys):
 *
 *   lookup   - names the prefix this request shares with an earlier one:
 *              "which node holds my prefix?". 0 = nothing to look up.
 *   remember - the key under which the NEXT turn will look this request up;
 *              the caller stores (remember -> node) once the node answered.
 *              0 = nothing worth remembering.
 *   anchor   - a key that stays the same for every turn of a conversation;
 *              used for rendezvous hashing when nothing is remembered.
 *
 * ### Chat (/api/chat, /v1/chat/completions): the two-key rule
 *
 * Let turn N send the messages M_N. The node that served it then holds the
 * tokens of M_N followed by its reply a_N. Turn N+1 sends
 *
 *     M_{N+1} = M_N ++ [a_N] ++ T_N
 *
 * where T_N are the messages the client adds (the next user message, or
 * tool results in an agent loop); none of them has role "assistant". So:
 *
 *     remember(R) = H(model, every message of R)
 *     lookup(R)   = H(model, the messages of R before its LAST message with
 *                   role "assistant"); 0 when R has no assistant message or
 *                   nothing precedes it
 *
 * Proof that turn N+1 finds turn N: the last assistant message of M_{N+1}
 * is a_N (T_N holds none), and the messages before it are exactly M_N, so
 * lookup(M_{N+1}) = H(model, M_N) = remember(M_N).
 *
 * Why not the obvious "messages before the last user message": for turn
 * N+1 that is M_N ++ [a_N], which contains the reply. The reply is unknown
 * when turn N is routed and would have to be taken from the response
 * stream, and it is precisely the message a client re-serialises
 * differently (trimmed, thinking dropped, tool-call ids added), so the
 * chain would break. Cutting at the last assistant message excludes it on
 * both sides, and also covers agent loops (T_N = tool results, no user
 * message), regenerating a reply (same lookup key again) and editing the
 * last user message (same lookup key).
 *
 *     anchor(R)   = H(model, the messages of R up to and including its
 *                   FIRST message with role "user"); all of R when none
 *
 * Later turns only append, so the anchor is the same at every turn. It is
 * what rendezvous hashing uses: a per-turn key cannot make daemons agree,
 * because each turn's node would then be a function of a different key.
 * Including the first user message (not only the system prompt) keeps
 * conversations that share a long system prompt spread over the nodes.
 *
 * H is computed in one streaming pass over the messages: lookup, anchor and
 * remember are snapshots of the same running hash, so the equalities above
 * hold exactly (up to 64-bit collisions), whatever the sizes.
 *
 * What a message contributes (its canonical form): the fields role,
 * content, images, tool_calls, tool_call_id, tool_name and name, in that
 * fixed order, each matched as Go's encoding/json matches struct fields
 * (ASCII case-insensitively; of duplicates, the last one). Each value is
 * hashed as what it means, not as how it is written: strings by their
 * decoded text (escapes resolved as sol_json_string_decode() does), numbers
 * by their text, objects independently of member order (tool-call
 * arguments), arrays in order (content parts, images). null, "", [] and {}
 * count as absent. Values nested deeper than SOL_AFFINITY_CANON_DEPTH are
 * hashed as their raw text. Other fields are ignored, notably "thinking",
 * which clients and Ollama's templates drop from earlier turns. So
 * whitespace, escape spelling ("\u00e9" vs "é", "\/" vs "/"), member order
 * and ignored fields never change a key; the model, message order, roles,
 * contents, images and tool calls always do. Hashing raw message text
 * instead would break the chain whenever a client re-serialises its
 * history differently (Python's ensure_ascii, PHP's escaped slashes, a
 * proxy's pretty-printing).
 *
 * ### Generate (/api/generate; also /v1/completions with a string prompt)
 *
 *  - With a non-empty "context" array (Ollama's deprecated token list,
 *    which already holds the earlier turns): lookup = anchor =
 *    H(model, the context's numbers). remember = 0: the next turn's context
 *    comes from this turn's response. A caller that reads the response's
 *    final "context" may remember sol_affinity_key_context() of it, which
 *    is exactly the next turn's lookup key.
 *  - Otherwise: H(model, decoded "system", the first
 *    SOL_AFFINITY_PROMPT_PREFIX decoded bytes of "prompt") is all three
 *    keys. A client that keeps its history in the prompt appends to it, so
 *    the leading bytes stay the same from turn to turn; a conversation is
 *    recognised from the first turn whose prompt has reached that length
 *    (shorter prompts are keyed by their whole text). Fields other than
 *    model, system, prompt and context are ignored.
 *  - Neither a prompt, a system nor a context: no keys.
 *
 * ### Explicit sessions
 *
 * A request header `X-Sollol-Session: <id>` replaces the body's keys:
 * lookup = remember = anchor = H(model, id), so a client can pin a session
 * whatever its bodies look like (RAG prompts that change at the front).
 *
 * ### Key properties
 *
 * Keys are never 0 for a keyed request. The model is part of every key
 * (a KV cache belongs to one model). Chat, generate, context and session
 * keys are domain-separated and never meant to equal each other. Keys are
 * the same on every host and build of this version (little-endian reading,
 * no seed), which rendezvous agreement between daemons relies on; a
 * change of the canonical form must bump SOL_AFFINITY_KEY_VERSION.
 *
 * ## Memory
 *
 * struct sol_affinity maps key -> (node index, expires_at_ms) in a bounded
 * table: capacity fixed at init (default 65,536), a chained hash table
 * plus an intrusive LRU list, all allocated once by sol_affinity_init().
 * lookup, remember (insert, update, touch) and eviction are O(1) expected
 * and never allocate. When full, remembering a new key evicts the least
 * recently used entry (looked up or remembered). An entry is valid while
 * now_ms < expires_at_ms; at now_ms == expires_at_ms it has expired and
 * behaves as absent (and is dropped when met). Times are the caller's
 * milliseconds on any clock, the same for every call (the loop's uv_now()).
 * Entries of an expired model or a removed node are not found by time
 * alone: sol_affinity_forget_node() drops a node's entries (O(entries)).
 *
 * An entry says "this node served that prefix", not "it is still cached":
 * a node keeps only one cache per parallel slot, so under load another
 * conversation may have taken it. The scorer's affinity_prompt_fraction
 * is where that optimism is priced.
 *
 * ## Rendezvous
 *
 * sol_rendezvous_pick() returns the eligible node with the highest
 * score(key, node id), a mix of both 64-bit values. Removing a node moves
 * only the keys it had (to their second choice); adding one moves only
 * the keys it now wins (about 1/(n+1) of them); the shares are uniform;
 * the choice depends on nothing but the key and the eligible ids, not on
 * table order, so daemons with the same eligible set agree.
 *
 * ## Using it (the request lifecycle)
 *
 *  1. After sol_inspect_body(): a session header -> sol_affinity_keys_session();
 *     /api/chat and /v1/chat/completions -> sol_affinity_keys_chat(
 *     &bi.messages, canonical model); /api/generate -> sol_affinity_keys_generate(
 *     body, len, canonical model). Other routes (embeddings, ...) have no
 *     keys: affinity_node = -1.
 *  2. For each attempt: eligible[i] = sol_scorer_eligible(node i, req, now)
 *     (with the tried set), node_ids[i] = sol_affinity_node_id(base_url),
 *     then req.affinity_node = sol_affinity_pick(...).
 *  3. When the chosen node has answered completely (2xx, done), and only
 *     then: sol_affinity_remember(a, keys.remember, node->index,
 *     sol_affinity_expiry(now, keep_alive_ms)), with the request's
 *     keep_alive (Ollama's duration or seconds; the KV cache lives as long
 *     as the model stays loaded, i.e. keep_alive after the request ends),
 *     else SOL_AFFINITY_DEFAULT_KEEP_ALIVE_MS. A failed, cancelled or
 *     broken attempt is not remembered.
 *  4. A node removed or replaced by a config reload (or found restarted):
 *     sol_affinity_forget_node(a, index) before its index is reused.
 *  5. Optionally, from a timer: sol_affinity_sweep() so that stats count
 *     only live entries.
 *
 * Pure computation: no I/O, no clock, no global state, single-threaded
 * (one struct per loop). Key functions and rendezvous never allocate and
 * are reentrant; only init allocates.
 */
#ifndef SOLLOL_AFFINITY_H
#define SOLLOL_AFFINITY_H

#include "sollol/json_scan.h"

#include <stddef.h>
#include <stdint.h>

#define SOL_AFFINITY_KEY_VERSION           1      /* of the canonical forms above */
#define SOL_AFFINITY_DEFAULT_CAPACITY      65536u /* entries */
#define SOL_AFFINITY_MAX_CAPACITY          (1u << 24)
#define SOL_AFFINITY_DEFAULT_KEEP_ALIVE_MS 300000 /* Ollama's default keep_alive: 5 min */
#define SOL_AFFINITY_PROMPT_PREFIX         1024   /* decoded prompt bytes keyed (generate) */
#define SOL_AFFINITY_CANON_DEPTH           16     /* deeper values are hashed as raw text */

struct sol_affinity_keys {
    uint64_t lookup;   /* find the node holding this request's prefix; 0 = none */
    uint64_t remember; /* store the serving node under it; 0 = nothing to store */
    uint64_t anchor;   /* rendezvous key, constant over a conversation; 0 = unkeyed */
};

/*
 * Chat keys (rules above) of a validated "messages" array span, e.g.
 * sol_body_info.messages; `model` is the canonical model name (ASCII case
 * is folded; NULL counts as ""). Fills *out (all 0 when `messages` is NULL,
 * absent, not an array or empty). Returns 1 when the request is keyed
 * (out->anchor != 0), else 0. One pass over the messages; no allocation.
 */
int sol_affinity_keys_chat(const struct sol_json_span *messages, const char *model,
                           struct sol_affinity_keys *out);

/*
 * Generate keys (rules above) of a whole request body that passed
 * sol_json_scan_object() (surrounding whitespace allowed). "context",
 * "system" and "prompt" are matched as Go matches them (case-insensitive,
 * last duplicate wins); a prompt that is not a string is ignored. Fills
 * *out; returns 1 when keyed, else 0 (all keys 0).
 */
int sol_affinity_keys_generate(const char *body, size_t len, const char *model,
                               struct sol_affinity_keys *out);

/*
 * H(model, numbers) of a validated "context" array span: the lookup key of
 * a generate request carrying it, and thus, applied to the final "context"
 * of a response, the key to remember for the next turn. 0 when `context`
 * is NULL, not an array or empty. Elements are hashed by their text.
 */
uint64_t sol_affinity_key_context(const struct sol_json_span *context, const char *model);

/*
 * Session keys: all three = H(model, id) for the value of X-Sollol-Session
 * (`len` bytes; leading and trailing spaces and tabs are ignored). Returns
 * 1, or 0 with all keys 0 when the id is NULL or empty.
 */
int sol_affinity_keys_session(const char *id, size_t len, const char *model,
                              struct sol_affinity_keys *out);

/*
 * A node's identity for rendezvous hashing: a hash of a string every daemon
 * spells the same way for that node, such as its base URL (names are local
 * to a config). Never 0.
 */
uint64_t sol_affinity_node_id(const char *identity);

/*
 * The eligible node with the highest rendezvous score for `key`: an index
 * in [0, n), or -1 when n is 0, node_ids is NULL or no node is eligible.
 * eligible[i] nonzero = node i is a candidate; NULL = all are. Nodes with
 * equal ids (a misconfiguration) tie; the lower index wins. O(n).
 */
int sol_rendezvous_pick(uint64_t key, const uint64_t *node_ids, const unsigned char *eligible,
                        unsigned n);

/* Counters since init (entries is current). */
struct sol_affinity_stats {
    uint64_t entries;   /* stored now, including expired ones not yet met */
    uint64_t capacity;  /* as initialised */
    uint64_t hits;      /* lookups that found a live entry */
    uint64_t misses;    /* lookups that found none or an expired one */
    uint64_t inserts;   /* remember() of a new key */
    uint64_t updates;   /* remember() of a key already stored */
    uint64_t evictions; /* entries pushed out by capacity */
    uint64_t expired;   /* entries dropped as expired (lookup, sweep) */
    uint64_t forgotten; /* entries dropped by forget_node() or clear() */
};

struct sol_affinity_slot; /* private */

/* The memory. Fields are private; zero-initialised (or after a failed
 * init or free) it is a valid empty memory that remembers nothing. */
struct sol_affinity {
    struct sol_affinity_slot *slots;
    uint32_t *buckets;
    uint32_t capacity, mask, count;
    uint32_t free_head, lru_head, lru_tail; /* head = most recently used */
    uint64_t salt;                          /* bucket placement, per instance */
    struct sol_affinity_stats st;
};

/*
 * Allocates a memory of `capacity` entries (0 = SOL_AFFINITY_DEFAULT_CAPACITY)
 * once; about 40 bytes per entry. Returns 0, or -1 (and a zeroed *a) when
 * capacity exceeds SOL_AFFINITY_MAX_CAPACITY or memory is short.
 */
int sol_affinity_init(struct sol_affinity *a, unsigned capacity);

/* Frees the memory and zeroes *a; safe on a zeroed struct and twice. */
void sol_affinity_free(struct sol_affinity *a);

/*
 * The node index remembered for `key` at now_ms, or -1 (key 0, absent, or
 * expired: now_ms >= expires_at_ms, in which case the entry is dropped).
 * A hit makes the entry the most recently used; it does not extend its
 * expiry. Key 0 is not counted as a lookup.
 */
int sol_affinity_lookup(struct sol_affinity *a, uint64_t key, uint64_t now_ms);

/*
 * Remembers key -> node_index until expires_at_ms (exclusive) and makes it
 * the most recently used entry: replaces node and expiry of a stored key,
 * else inserts, evicting the least recently used entry when full. No-op
 * for key 0, node_index > INT32_MAX or an uninitialised memory.
 */
void sol_affinity_remember(struct sol_affinity *a, uint64_t key, unsigned node_index,
                           uint64_t expires_at_ms);

/*
 * expires_at_ms for a model kept `keep_alive_ms` after now_ms, as Ollama
 * reads keep_alive: negative = forever (UINT64_MAX), 0 = unloaded at once
 * (now_ms: the entry is born expired), else now_ms + keep_alive_ms
 * (saturating).
 */
uint64_t sol_affinity_expiry(uint64_t now_ms, long long keep_alive_ms);

/* Drops every entry of node `node_index`; returns how many. O(entries). */
unsigned sol_affinity_forget_node(struct sol_affinity *a, unsigned node_index);

/* Drops every entry expired at now_ms; returns how many. O(entries). */
unsigned sol_affinity_sweep(struct sol_affinity *a, uint64_t now_ms);

/* Drops every entry (counted as forgotten). O(capacity). */
void sol_affinity_clear(struct sol_affinity *a);

void sol_affinity_get_stats(const struct sol_affinity *a, struct sol_affinity_stats *out);

/* Where sol_affinity_pick()'s answer came from. */
enum sol_affinity_source {
    SOL_AFFINITY_NONE = 0,   /* no keys or no eligible node: -1 */
    SOL_AFFINITY_REMEMBERED, /* the node that served the prefix */
    SOL_AFFINITY_RENDEZVOUS, /* nothing usable remembered: rendezvous on the anchor */
};

/*
 * The affinity node of a request, for sol_score_req.affinity_node: the
 * node remembered for k->lookup if it is eligible (index < n and
 * eligible[index]), else sol_rendezvous_pick(k->anchor, ...), else -1.
 * A remembered node that is not eligible now stays remembered. node_ids
 * and eligible are indexed by node index (n = table size; eligible NULL =
 * all); `a` may be NULL (rendezvous only). Each call with a lookup key
 * counts as one lookup in the stats (a retry is another call).
 *
 * *src (may be NULL) says which rule answered. A rendezvous node usually
 * holds nothing yet (first turn, or a turn another daemon served): giving
 * it the scorer's discount anyway is what makes every daemon send the
 * conversation to the same node from its first turn on, so that later
 * turns find their cache wherever they arrive. A caller that runs a single
 * daemon and prefers pure cost-based first turns may pass the rendezvous
 * answer as -1 instead.
 */
int sol_affinity_pick(struct sol_affinity *a, const struct sol_affinity_keys *k,
                      const uint64_t *node_ids, const unsigned char *eligible, unsigned n,
                      uint64_t now_ms, enum sol_affinity_source *src);

#endif
