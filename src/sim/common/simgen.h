/*
 * simgen.h - deterministic generation shared by the simulators: hashes, the
 * PRNG step, words of generated text, and the clock that paces them.
 *
 * Everything here is a pure function of its arguments (except now_ns), so
 * two simulator processes given the same input produce the same output:
 * tests compare texts and vectors across nodes.
 *
 * The simulators keep their own copies of these few lines rather than link
 * the daemon's (src/daemon/affinity.c has a private mix64): the simulators
 * are the oracle the daemon's tests trust, so they share no code with the
 * daemon beyond the loop glue and buffers of src/core.
 */
#ifndef SOLLOL_SIM_SIMGEN_H
#define SOLLOL_SIM_SIMGEN_H

#include <stddef.h>
#include <stdint.h>

#define FNV64_INIT 0xcbf29ce484222325ULL
/* splitmix64's increment (the golden ratio in 64 bits). */
#define SIMGEN_GAMMA 0x9e3779b97f4a7c15ULL
/* Room for one generated token and its NUL. */
#define SIMGEN_TOKEN_MAX 32

/* FNV-1a over n bytes, continuing from h (start with FNV64_INIT). */
uint64_t fnv1a64(uint64_t h, const void *data, size_t n);
/* splitmix64's finaliser: a bijection with full avalanche. */
uint64_t fmix64(uint64_t x);
/* One splitmix64 output for state x: fmix64(x + SIMGEN_GAMMA). */
uint64_t mix64(uint64_t x);

/*
 * The next token of deterministic text. The token's random bits are
 * mix64(*state), then *state advances by SIMGEN_GAMMA (a splitmix64
 * stream). A first token is the chosen word of `vocab` capitalised; a later
 * one is " word", or "." one time in 16. Writes the token and a NUL to out;
 * returns its length (< SIMGEN_TOKEN_MAX: every vocab word must be shorter
 * than SIMGEN_TOKEN_MAX - 1 bytes).
 */
size_t simgen_token(uint64_t *state, const char *const vocab[64], int first,
                    char out[SIMGEN_TOKEN_MAX]);

/* Monotonic clock in nanoseconds (the loop's clock, uv_hrtime). */
uint64_t now_ns(void);

#endif
