/*
 * rpc_probe.h - non-blocking probe of one ggml rpc-server on the loop
 * (uv_tcp, one overall timeout): HELLO in the 4.x form, and on a connection
 * closed without a reply, a second connection with the empty (1.x-3.x)
 * form; then DEVICE_COUNT and GET_DEVICE_MEMORY per device. The bytes come
 * from rpc_codec.h.
 *
 * rpc-server serves one client at a time: while llama-server holds it, a
 * probe's connect succeeds but its HELLO is never answered. A result with
 * connected=1, answered=0 therefore means "busy or hung", not "dead"; the
 * coordinator uses connect-only probes for liveness while llama-server
 * runs (connect_only below).
 */
#ifndef SOLLOL_RPC_PROBE_H
#define SOLLOL_RPC_PROBE_H

#include "base/rpc_codec.h"

#include <stdint.h>
#include <uv.h>

#define SOL_RPC_MAX_DEVICES 16

struct sol_rpc_probe;

struct sol_rpc_probe_result {
    int connected; /* a TCP connection was established */
    int answered;  /* HELLO was answered (version valid) */
    int v4_form;   /* the 4.x HELLO form was accepted */
    int complete;  /* devices and memory were read too */
    struct sol_rpc_version version;
    unsigned n_devices; /* at most SOL_RPC_MAX_DEVICES are read */
    uint64_t free_bytes[SOL_RPC_MAX_DEVICES];
    uint64_t total_bytes[SOL_RPC_MAX_DEVICES];
    uint64_t free_sum, total_sum;
    char error[200]; /* "" on full success */
    char peer[64];   /* the address connected to (numeric), "" before a connection */
};

/* Called once per probe, on the loop, unless it was cancelled first. The
 * probe frees itself after the callback returns: do not keep the pointer. */
typedef void (*sol_rpc_probe_cb)(const struct sol_rpc_probe_result *res, void *ud);

/*
 * Starts probing host:port (an IPv4/IPv6 literal or a name, resolved with
 * uv_getaddrinfo). With connect_only, the probe ends as soon as the TCP
 * connection is made (liveness while llama-server holds the server).
 * timeout_ms bounds the whole probe. Returns the probe (for cancelling),
 * or NULL when memory runs out (cb is then never called).
 */
struct sol_rpc_probe *sol_rpc_probe_start(uv_loop_t *loop, const char *host, int port,
                                          unsigned timeout_ms, int connect_only,
                                          sol_rpc_probe_cb cb, void *ud);

/* Cancels a running probe: its callback will not run; its handles close
 * and it frees itself. Safe only before the callback ran. */
void sol_rpc_probe_cancel(struct sol_rpc_probe *p);

#endif
