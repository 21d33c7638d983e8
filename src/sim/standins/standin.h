/*
 * standin.h - shared pieces of the llama.cpp stand-ins (rpc-server and
 * llama-server simulators used by the tests of the sharded path).
 *
 *   rpc_wire.c      ggml RPC wire format: commands, HELLO in both forms,
 *                   protocol versions, blocking I/O helpers, environment knobs
 *   rpc_server.c    the rpc-server stand-in (serial accept loop, one client)
 *   llama_server.c  the llama-server stand-in (libuv loop + libmicrohttpd),
 *   llama_http.c    with its private header llama_sim.h
 *   llama_gen.c
 *
 * Facts: /work/shared/PROTOCOLS.md sections 2 and 3; docs/simulator.md
 * ("llama.cpp stand-ins") documents the flags and SOLLOL_SIM_* knobs.
 */
#ifndef SOLLOL_STANDIN_H
#define SOLLOL_STANDIN_H

#include <stddef.h>
#include <stdint.h>

/* ---- ggml RPC commands (the numbers the stand-ins implement) ---- */
#define RPC_CMD_GET_DEVICE_MEMORY 11
#define RPC_CMD_HELLO             14
#define RPC_CMD_DEVICE_COUNT      15

/* Size of the conn_caps block of a 4.x HELLO (request and reply). */
#define RPC_CONN_CAPS_SIZE 24
/* Largest payload a stand-in accepts for a command it implements. */
#define RPC_MAX_PAYLOAD 64

/* The protocol version the stand-ins speak when SOLLOL_SIM_RPC_VERSION is unset. */
#define RPC_DEFAULT_VERSION "3.0.0"

struct rpc_version {
    unsigned major, minor, patch;
};

/* Parses "MAJ.MIN.PATCH" (each 0..255). Returns 0, or -1 on anything else. */
int rpc_version_parse(const char *s, struct rpc_version *v);
/* The version from $SOLLOL_SIM_RPC_VERSION, else RPC_DEFAULT_VERSION.
 * Returns 0, or -1 (after printing why to stderr) when the variable is bad. */
int rpc_version_from_env(struct rpc_version *v);
/* HELLO request payload size for a client/server of version v: 0 before
 * 4.x, RPC_CONN_CAPS_SIZE from 4.x. */
size_t rpc_hello_request_size(const struct rpc_version *v);
/* HELLO reply payload size: 3 before 4.x, 4 + RPC_CONN_CAPS_SIZE from 4.x. */
size_t rpc_hello_reply_size(const struct rpc_version *v);
/* GET_DEVICE_MEMORY carries a u32 device index from 3.x, nothing before. */
int rpc_has_device_arg(const struct rpc_version *v);
/* DEVICE_COUNT exists from 3.x (multi-device servers). */
int rpc_has_device_count(const struct rpc_version *v);
/* The client's rule: compatible when the majors are equal and the server's
 * minor is not higher than the client's. */
int rpc_version_compatible(const struct rpc_version *client, const struct rpc_version *server);

void rpc_put_u32(uint8_t *p, uint32_t v);
void rpc_put_u64(uint8_t *p, uint64_t v);
uint32_t rpc_get_u32(const uint8_t *p);
uint64_t rpc_get_u64(const uint8_t *p);

/*
 * Blocking I/O that gives up when `stop_fd` (may be -1) becomes readable:
 * the self-pipe a signal handler writes to. Both return 0 when all n bytes
 * moved, -1 on error, end of file or stop. EINTR is retried.
 */
int rpc_read_full(int fd, void *buf, size_t n, int stop_fd);
int rpc_write_full(int fd, const void *buf, size_t n);

/* Environment knobs: the value of `name` as a number, or `def` when unset
 * or empty. Returns -1 (after printing why) when set but not a number >= min. */
int env_double(const char *name, double def, double min, double *out);

/* Disables core files, then abort(): the stand-ins die by SIGABRT exactly
 * where the real programs would, without littering the test directory. */
void standin_abort(void) __attribute__((noreturn));

#endif
