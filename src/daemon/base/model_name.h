/*
 * model_name.h - Ollama model name normalisation and hashing.
 *
 * A name is `[host/][namespace/]model[:tag]` with defaults
 * `registry.ollama.ai`, `library` and `latest`. A `:` is a tag separator only
 * after the last `/` (so `localhost:5000/ns/m` has a host with a port and no
 * tag). Ollama compares names case-insensitively, so the canonical form is
 * lowercased: two spellings of one model always give the same canonical
 * string and the same key.
 *
 * Validity follows Ollama's types/model/name.go (ParseName + IsValid):
 *  - host:      1..350 bytes, first [A-Za-z0-9_], then [A-Za-z0-9_.:-];
 *               a scheme is dropped (`https://hf.co/a/b` = `hf.co/a/b`);
 *  - namespace: 1..80 bytes, first [A-Za-z0-9_], then [A-Za-z0-9_-] (no '.');
 *  - model:     1..80 bytes, first [A-Za-z0-9_], then [A-Za-z0-9_.-];
 *  - tag:       1..80 bytes, same alphabet as model;
 *  - a separator that is present promises a non-empty part: `a//b`, `/m`,
 *    `m:` are invalid. Spaces, control characters, '@', '+' are invalid.
 * Deliberate differences from Ollama:
 *  - at most 3 path parts: newer Ollama also accepts a 4-part
 *    `host/namespace/{skill|agent|mcp}/name` for non-model artifacts; those
 *    are not routable models and are rejected here;
 *  - the canonical form must fit in SOL_MODEL_NAME_MAX - 1 (255) bytes, so
 *    a valid Ollama name with a very long host (up to 350) is rejected;
 *  - the input is limited to SOL_MODEL_INPUT_MAX bytes (a scheme of any
 *    length is accepted by Ollama; nobody needs that).
 *
 * Pure functions: no allocation, no global state, reentrant.
 */
#ifndef SOLLOL_MODEL_NAME_H
#define SOLLOL_MODEL_NAME_H

#include "base/node-t.h"

#include <stddef.h>
#include <stdint.h>

/* Longest input considered (bytes, without the NUL); longer is invalid. */
#define SOL_MODEL_INPUT_MAX 1024

/*
 * Writes the canonical form of `in` to `out`: the name as Ollama shows it in
 * /api/tags (DisplayShortest), lowercased. The default host is omitted, and
 * so is the default namespace when the host is the default one; the tag is
 * always present:
 *   llama3.2                                -> llama3.2:latest
 *   registry.ollama.ai/library/llama3.2:3b  -> llama3.2:3b
 *   registry.ollama.ai/myns/model:tag       -> myns/model:tag
 *   hf.co/bartowski/Foo-GGUF:Q4_K_M         -> hf.co/bartowski/foo-gguf:q4_k_m
 * Returns 0 on success, -1 when `in` is NULL or not a valid name (see above),
 * or the result (with its NUL) does not fit in `outlen` or in
 * SOL_MODEL_NAME_MAX. On -1, `out` holds "" when outlen > 0. `out` may be
 * the same buffer as `in`. Idempotent: canonicalising a canonical name gives
 * it back unchanged.
 */
int sol_model_canonical(const char *in, char *out, size_t outlen);

/*
 * 64-bit FNV-1a hash of a canonical name (ASCII letters folded to lowercase
 * while hashing, so a name that is only miscased still hashes the same).
 * Never returns 0, so 0 can mean "no key". Pass a canonical name: different
 * spellings of one model give different keys unless canonicalised first.
 * The scorer compares models by key alone; with 64 bits a collision among
 * the few thousand names a cluster holds has odds around 1e-12.
 */
uint64_t sol_model_key(const char *canonical);

#endif
