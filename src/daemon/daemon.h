/*
 * daemon.h - the daemon object: owns the loop glue, the node table and
 * every request, and runs start-up and shutdown.
 *
 * Ownership: struct sol_daemon owns the MHD daemon, the curl multi, the
 * node table and the config it was started with. Each request is owned by
 * its MHD connection (see request.h); the daemon only keeps a list of them
 * so shutdown can reach every one.
 */
#ifndef SOLLOL_DAEMON_H
#define SOLLOL_DAEMON_H

#include "daemon-t.h"

#include <uv.h>

/*
 * Builds the node table from cfg (taking ownership of cfg), opens the
 * listening socket, starts MHD, curl and the health probes on `loop`. The
 * listener accepts once the first probe round is done (connections made
 * before wait in the backlog); then "listening on HOST:PORT" is printed on
 * stdout (tests and the demo read it).
 * Returns 0, or -1 with a message in err (nothing is left running).
 */
int sol_daemon_start(struct sol_daemon *d, uv_loop_t *loop, struct sol_config *cfg, char *err,
                     size_t errlen);

/*
 * Stops: no new connections, every live request is ended (its upstream
 * cancelled, its client told), handles closed. on_stopped runs when the loop
 * holds nothing of the daemon any more; the caller then frees with
 * sol_daemon_free(). Idempotent.
 */
void sol_daemon_stop(struct sol_daemon *d, void (*on_stopped)(struct sol_daemon *d));

/* Frees what sol_daemon_start() allocated. Only after on_stopped. */
void sol_daemon_free(struct sol_daemon *d);

/*
 * Graceful shutdown: from now on new requests are answered 503 with
 * "Connection: close", requests already admitted (streaming, upstream or
 * queued) continue; the daemon stops (sol_daemon_stop) when the last one
 * ends or after cfg->shutdown_grace_ms, whichever comes first. Sends
 * STOPPING=1 to the service manager. A second call stops at once.
 * on_stopped is as for sol_daemon_stop.
 */
void sol_daemon_shutdown(struct sol_daemon *d, void (*on_stopped)(struct sol_daemon *d));

/*
 * Re-reads the configuration through d->load_config and applies it
 * (reload.h). An invalid config is logged with its reason and changes
 * nothing. Sends RELOADING=1 then READY=1 to the service manager. Returns
 * 0 when applied, -1 when rejected.
 */
int sol_daemon_reload(struct sol_daemon *d);

#endif
