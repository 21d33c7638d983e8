/*
 * sha256.h - SHA-256 (FIPS 180-4) and a constant-time comparison.
 *
 * Used to check API keys: the config holds the SHA-256 of each key, never
 * the key itself, so a leaked config file does not leak keys. Self-written
 * (about 100 lines, tested against the NIST example vectors) rather than a
 * new dependency on libcrypto for one hash.
 */
#ifndef SOLLOL_SHA256_H
#define SOLLOL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SOL_SHA256_LEN 32

struct sol_sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes fed so far */
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
};

/* Starts a new hash. */
void sol_sha256_init(struct sol_sha256 *c);
/* Feeds len bytes (len may be 0; data may then be NULL). */
void sol_sha256_update(struct sol_sha256 *c, const void *data, size_t len);
/* Writes the 32-byte digest; c must be initialised again before reuse. */
void sol_sha256_final(struct sol_sha256 *c, unsigned char out[SOL_SHA256_LEN]);
/* One-shot: the digest of data[0..len). */
void sol_sha256(const void *data, size_t len, unsigned char out[SOL_SHA256_LEN]);

/*
 * Parses 64 hex digits (either case) into 32 bytes. Returns 0, or -1 when s
 * is not exactly 64 hex digits (out is then undefined).
 */
int sol_sha256_from_hex(const char *s, unsigned char out[SOL_SHA256_LEN]);
/* Writes 64 lowercase hex digits and a NUL into hex (65 bytes). */
void sol_sha256_to_hex(const unsigned char d[SOL_SHA256_LEN], char hex[65]);

/*
 * Compares n bytes in time that depends only on n, never on where the first
 * difference is, so a client timing 401s learns nothing about a key.
 * Returns 1 when equal, 0 otherwise.
 */
int sol_ct_equal(const void *a, const void *b, size_t n);

#endif
