/*
 * mhd_uv.h - drives a libmicrohttpd daemon from a libuv loop.
 *
 * The daemon must be started with MHD_USE_EPOLL (no internal thread) and
 * usually MHD_ALLOW_SUSPEND_RESUME. The glue watches MHD's epoll fd with one
 * uv_poll_t and re-arms one uv_timer_t from MHD_get_timeout() after every
 * MHD_run(), so MHD never runs on a thread of its own and never blocks.
 *
 * In external polling mode MHD does not wake itself after
 * MHD_resume_connection(): call sol_mhd_uv_resume() instead, which resumes
 * and schedules an MHD_run() on the next loop iteration.
 */
#ifndef SOLLOL_MHD_UV_H
#define SOLLOL_MHD_UV_H

#include <microhttpd.h>
#include <uv.h>

struct sol_mhd_uv {
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;     /* MHD's epoll fd */
    uv_timer_t timer;   /* MHD's next timeout */
    int handles_open;   /* handles not yet through their close callback */
    int kick_pending;   /* an MHD_run() is due (resumed connections) */
    unsigned suspended; /* connections suspended with sol_mhd_uv_suspend, not resumed */
    void (*on_closed)(struct sol_mhd_uv *glue);
    /* Runs in a row for which MHD asked to run again at once, and since
     * when (see SOL_MHD_IMMEDIATE_RUNS). */
    unsigned zero_runs;
    uint64_t spin_since_ms;
    uint64_t spin_reported_ms;
    /* Optional: called (outside MHD_run) when MHD has asked to run again
     * at once for SOL_MHD_SPIN_MS or more, then at most once per
     * SOL_MHD_SPIN_MS while it goes on; since_ms is when it began (loop
     * clock). The daemon cuts the connections that made no progress. */
    void (*on_spin)(struct sol_mhd_uv *glue, uint64_t since_ms);
    void *spin_ud;
};

/*
 * MHD_get_timeout() says 0 ("run again now") while a connection has input
 * it has not consumed. libmicrohttpd 0.9.75 says so forever for a
 * connection whose input it can neither use nor refuse (a chunk-size line
 * longer than its buffer), and libuv 1.44 runs a 0 ms timer re-armed from
 * its own callback again in the same pass, without polling I/O or
 * signals: one such connection froze the loop. So only the first
 * SOL_MHD_IMMEDIATE_RUNS runs of a streak follow at once; after that the
 * timer waits 1 ms, so every run is a loop iteration that polls I/O and
 * signals, and a streak longer than SOL_MHD_SPIN_MS is reported (on_spin).
 */
#define SOL_MHD_IMMEDIATE_RUNS 16
#define SOL_MHD_SPIN_MS        250

/*
 * Opens a non-blocking, close-on-exec listening TCP socket. `host` is an IPv4
 * or IPv6 literal, "localhost" or a name resolved with getaddrinfo (called
 * before the loop runs, so its blocking is acceptable); an empty host or
 * "0.0.0.0" binds all IPv4 addresses. `port` 0 binds an ephemeral port,
 * returned in *bound_port. Returns the fd, or -1 with a message in err.
 */
int sol_listen_socket(const char *host, int port, int backlog, int *bound_port, char *err,
                      size_t errlen);

/* Nonzero when socket fd is bound to a loopback address (127.0.0.0/8 or
 * ::1) only; 0 for any other address, an unbound socket or an error. */
int sol_socket_is_loopback(int fd);

/*
 * Starts watching `daemon` on `loop`. Returns 0, or a negative libuv error.
 * The glue does not own the daemon: stop it only after sol_mhd_uv_close()
 * has called back.
 */
int sol_mhd_uv_attach(struct sol_mhd_uv *glue, uv_loop_t *loop, struct MHD_Daemon *daemon);

/* Runs MHD once now and re-arms the timer. Safe from any loop callback that
 * is not itself called from inside MHD_run(). */
void sol_mhd_uv_run(struct sol_mhd_uv *glue);

/* MHD_suspend_connection(), counted for sol_mhd_uv_kick's spacing. */
void sol_mhd_uv_suspend(struct sol_mhd_uv *glue, struct MHD_Connection *conn);

/* Resumes a suspended connection and makes sure MHD runs soon to serve it:
 * on the next loop iteration, or up to SOL_MHD_KICK_MAX_MS later when many
 * connections are suspended (see sol_mhd_uv_kick). Safe from
 * any loop callback, including MHD's own callbacks (the run happens after
 * the current one returns). */
void sol_mhd_uv_resume(struct sol_mhd_uv *glue, struct MHD_Connection *conn);

/*
 * Schedules an MHD_run(): on the next loop iteration while few connections
 * are suspended. libmicrohttpd 0.9.75 walks its whole list of suspended
 * connections in every run that follows a resume, so with thousands of
 * open streams (each suspended between tokens) a run per token costs
 * O(streams): perf showed 64% of sollold's CPU in that walk at 4,000
 * streams. From SOL_MHD_KICK_PER_MS suspended connections on, the run
 * after a resume waits one millisecond per SOL_MHD_KICK_PER_MS of them (at
 * most SOL_MHD_KICK_MAX_MS), so one walk serves every resume of its window.
 * Runs for socket activity are not delayed (they serve the resumes pending
 * then): MHD accepts at most ten connections per run, so spacing them would
 * cap the accept rate (tried: TTFT p99 doubled). Suspensions are counted
 * only when they go through sol_mhd_uv_suspend().
 */
#define SOL_MHD_KICK_PER_MS 1500
#define SOL_MHD_KICK_MAX_MS 8
void sol_mhd_uv_kick(struct sol_mhd_uv *glue);

/* Closes the glue's handles; on_closed (may be NULL) runs once both are
 * closed, and only then may the daemon be stopped and the glue freed. */
void sol_mhd_uv_close(struct sol_mhd_uv *glue, void (*on_closed)(struct sol_mhd_uv *glue));

/*
 * Watches a client socket for hang-up while its MHD connection is suspended:
 * libmicrohttpd 0.9.75 does not poll suspended connections, so without this a
 * client that goes away while waiting for tokens would never be noticed.
 *
 * Lifecycle: init once, start/stop any number of times, close exactly once
 * before the connection's fd is closed by MHD (i.e. from the
 * request-completed callback at the latest). on_hangup runs at most once per
 * start, never while stopped; on_closed runs when the watch's handles are
 * closed and the memory holding the watch may be freed.
 *
 * Cost: a hang-up is reported within SOL_HANGUP_ARM_MS (plus loop latency)
 * of a start. The socket is only put under watch when a start lasts that
 * long: most requests are suspended for less than a millisecond, and arming
 * a poll handle costs five system calls (libuv checks the descriptor, sets
 * it non-blocking, adds it, removes it). Once armed, the poll keeps running
 * across stop/start (a stream suspends between every two tokens); a hang-up
 * seen while stopped is reported at the next start.
 */
#define SOL_HANGUP_ARM_MS 10

struct sol_hangup_watch {
    uv_poll_t poll;
    uv_timer_t arm_timer; /* arms the poll SOL_HANGUP_ARM_MS after a start */
    uv_loop_t *loop;
    int fd;
    int initialized; /* init succeeded and close has not been called */
    int active;      /* started, not stopped: on_hangup may run */
    int polling;     /* poll handle initialized */
    int poll_running;
    int hung_up; /* seen while stopped; reported at the next start */
    int handles_open;
    void (*on_hangup)(struct sol_hangup_watch *w);
    void (*on_closed)(struct sol_hangup_watch *w);
    void *data;
};

/* Returns 0 (no system call is made yet) or a negative libuv error (then
 * nothing needs closing). */
int sol_hangup_watch_init(struct sol_hangup_watch *w, uv_loop_t *loop, int fd,
                          void (*on_hangup)(struct sol_hangup_watch *w), void *data);
void sol_hangup_watch_start(struct sol_hangup_watch *w);
void sol_hangup_watch_stop(struct sol_hangup_watch *w);
/* Returns 1 when on_closed will be called later, 0 when the watch was never
 * initialized (on_closed is then not called). */
int sol_hangup_watch_close(struct sol_hangup_watch *w,
                           void (*on_closed)(struct sol_hangup_watch *w));

#endif
