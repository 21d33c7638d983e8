/*
 * rpc_codec.h - the few messages of ggml's RPC protocol the pre-flight
 * needs (PROTOCOLS.md section 3), as pure encode/decode functions: no
 * sockets, no allocation, every length checked. Unit-tested and fuzzable.
 *
 * Wire format, little-endian: request `cmd:u8 | size:u64 | payload`,
 * reply `size:u64 | payload`.
 *  - HELLO (14) is the first command. Protocol 4.x and later: request
 *    payload conn_caps[24] (zero for TCP), reply 28 bytes
 *    (major, minor, patch, pad, conn_caps[24]). Protocol 1.x-3.x: empty
 *    request, 3-byte reply (major, minor, patch). A server that gets the
 *    other form closes the connection without replying.
 *  - DEVICE_COUNT (15): empty request, reply u32 count.
 *  - GET_DEVICE_MEMORY (11): request u32 device from protocol 3 on, empty
 *    before; reply u64 free, u64 total.
 */
#ifndef SOLLOL_RPC_CODEC_H
#define SOLLOL_RPC_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum {
    SOL_RPC_CMD_GET_DEVICE_MEMORY = 11,
    SOL_RPC_CMD_HELLO = 14,
    SOL_RPC_CMD_DEVICE_COUNT = 15,
};

#define SOL_RPC_REQ_MAX       (1 + 8 + 24) /* largest request we encode */
#define SOL_RPC_HELLO_V4_CAPS 24

struct sol_rpc_version {
    unsigned major, minor, patch;
};

/* Encodes HELLO in the 4.x form (v4 != 0, 33 bytes) or the empty form
 * (9 bytes) into out (at least SOL_RPC_REQ_MAX bytes). Returns its length. */
size_t sol_rpc_encode_hello(unsigned char *out, int v4);

/* Encodes DEVICE_COUNT (9 bytes). Returns its length. */
size_t sol_rpc_encode_device_count(unsigned char *out);

/* Encodes GET_DEVICE_MEMORY for `device`, with the u32 argument when the
 * server's protocol major is 3 or more (13 bytes), else empty (9 bytes). */
size_t sol_rpc_encode_device_memory(unsigned char *out, uint32_t device, unsigned server_major);

/*
 * Frames one reply from the `len` bytes received so far. The payload must
 * be exactly `expect` bytes (every reply we read has a fixed size; any
 * other size is a protocol error, not an allocation). Returns the bytes
 * consumed (8 + expect) with *payload pointing into `in`, 0 when more bytes
 * are needed, -1 when the announced size differs from `expect`.
 */
long sol_rpc_frame_reply(const unsigned char *in, size_t len, size_t expect,
                         const unsigned char **payload);

/* Reply payload size of HELLO in each form: 28 (v4) or 3. */
size_t sol_rpc_hello_reply_size(int v4);

/* Decodes a HELLO reply payload of the given form. Returns 0, or -1 when
 * the size is wrong. */
int sol_rpc_decode_hello(const unsigned char *p, size_t n, int v4, struct sol_rpc_version *out);

/* Decodes DEVICE_COUNT's u32 (n must be 4). Returns 0 or -1. */
int sol_rpc_decode_device_count(const unsigned char *p, size_t n, uint32_t *count);

/* Decodes GET_DEVICE_MEMORY's u64 free, u64 total (n must be 16). */
int sol_rpc_decode_device_memory(const unsigned char *p, size_t n, uint64_t *free_b,
                                 uint64_t *total_b);

/*
 * Whether a backend of version `got` may serve a client built with `ref`:
 * same major and same minor (the same llama.cpp build everywhere; a client
 * rejects a higher minor, and a lower one lacks commands it may use).
 * Returns 1 when compatible, else 0 with a reason in why
 * ("protocol 3.0.0, expected 4.1.x (major differs)").
 */
int sol_rpc_version_compatible(const struct sol_rpc_version *ref, const struct sol_rpc_version *got,
                               char *why, size_t whylen);

/* Parses "MAJ.MIN[.PATCH]" (optionally prefixed with "v"). Returns 0/-1. */
int sol_rpc_version_parse(const char *s, struct sol_rpc_version *out);

/* ---- backend lists (config.c checks them, coordinator.c uses them) ---- */

/* One rpc-server address. */
struct sol_rpc_addr {
    char host[256];
    int port;
};

/* Most backends one list may name (the coordinator's table holds as many). */
#define SOL_RPC_MAX_BACKENDS 64

/* rpc-server's default port, for entries that give none. */
#define SOL_RPC_DEFAULT_PORT 50052

/*
 * Parses a backend list: JSON `[{"host":"h","port":N}, "h:p", ...]`, or
 * plain text "h:p,h:p" (the RPC_BACKENDS form; also newline-separated with
 * '#' comments, the rpc_backends.conf form). A missing port is 50052.
 * Entries go to out[0..cap) (out may be NULL to only validate); *n (may be
 * NULL) gets the count. Returns 0, or -1 with a bare reason in err.
 */
int sol_rpc_parse_backends(const char *text, struct sol_rpc_addr *out, size_t cap, size_t *n,
                           char *err, size_t errlen);

#endif
