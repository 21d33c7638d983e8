/*
 * demo.h - the embedded default: start a few ollama-sim processes on
 * ephemeral loopback ports and use them as the node list, so a newcomer's
 * `sollold --demo` answers /api/chat at once without any real Ollama.
 *
 * The children are spawned with uv_spawn and reaped by libuv's exit
 * callback (never waitpid(-1)); each is told to exit when its stdin closes,
 * so they also go away when the daemon is killed outright.
 */
#ifndef SOLLOL_DEMO_H
#define SOLLOL_DEMO_H

#include "base/config.h"

#include <uv.h>

struct sol_demo;

/*
 * Spawns cfg->demo_nodes simulators (cfg->sim_path, or ollama-sim next to
 * this executable). When every one has printed its port, adds them to cfg as
 * nodes "sim-1".. and calls on_ready(demo, 0); on failure on_ready(demo, -1)
 * after logging why. Returns NULL (with err) if nothing could be spawned.
 */
struct sol_demo *sol_demo_start(uv_loop_t *loop, struct sol_config *cfg,
                                void (*on_ready)(struct sol_demo *demo, int status, void *ud),
                                void *ud, char *err, size_t errlen);

/* Sends SIGTERM to every simulator and closes the handles; on_stopped runs
 * when all children are reaped and handles closed. */
void sol_demo_stop(struct sol_demo *demo, void (*on_stopped)(struct sol_demo *demo, void *ud));

void sol_demo_free(struct sol_demo *demo);

#endif
