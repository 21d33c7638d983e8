/*
 * child.h - one supervised child process (llama-server, rpc-server) on the
 * loop: started with uv_spawn through sollol-exec (PR_SET_PDEATHSIG, then
 * exec) in its own session, its stdout/stderr read line by line, reaped
 * only by libuv's exit callback, stopped with SIGTERM to its process group
 * and SIGKILL after a grace period.
 *
 * Ownership: sol_child_spawn() allocates the child; it frees itself once
 * the process has exited and every handle has closed, then calls on_closed.
 * The caller may read the fields marked read-only until on_exit has
 * returned; after on_exit it must drop its pointer.
 */
#ifndef SOLLOL_CHILD_H
#define SOLLOL_CHILD_H

#include "sollol/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sol_child;

struct sol_child_opts {
    uv_loop_t *loop;
    const char *exec_path; /* sollol-exec */
    const char *label;     /* log prefix: "[label] line" */
    char **argv;           /* program and arguments, NULL-terminated (copied by uv_spawn) */
    unsigned grace_ms;     /* SIGTERM -> SIGKILL delay of sol_child_stop() */
    /* Each output line (without its newline; long lines are cut). May be NULL. */
    void (*on_line)(void *owner, const char *line, size_t len);
    /* The process exited (status, or the signal that ended it). */
    void (*on_exit)(struct sol_child *ch);
    /* Every handle closed; the child is freed right after. May be NULL. */
    void (*on_closed)(void *owner);
    void *owner; /* for on_line and on_closed */
    void *ud;    /* for on_exit (ch->ud) */
};

struct sol_child {
    /* read-only for callers */
    char label[64];
    int pid;
    int running;        /* the exit callback has not run yet */
    int stop_requested; /* sol_child_stop() was called */
    int64_t exit_status;
    int term_signal;
    void *ud;
    /* private */
    uv_process_t proc;
    uv_pipe_t pipes[2];
    uv_timer_t kill_timer;
    int handles;
    unsigned grace_ms;
    struct sol_buf partial[2];
    void (*on_line)(void *owner, const char *line, size_t len);
    void (*on_exit)(struct sol_child *ch);
    void (*on_closed)(void *owner);
    void *owner;
};

/* Longest output line logged and passed to on_line. */
#define SOL_CHILD_LINE_MAX 1000

/*
 * Starts `sollol-exec <our pid> argv...`. Returns the child, or NULL with a
 * message in err naming the program (nothing is left running; on_closed
 * still runs once the handles have closed, so the caller's accounting
 * stays simple: count a child from this call to its on_closed).
 */
struct sol_child *sol_child_spawn(const struct sol_child_opts *o, char *err, size_t errlen);

/* SIGTERM to the child's process group, SIGKILL after grace_ms. Idempotent;
 * NULL or an exited child is fine. */
void sol_child_stop(struct sol_child *ch);

/* A free loopback TCP port: the first free one in [lo, hi], or an
 * ephemeral one when lo is 0. Returns 0 with *port, or -1. The port is free
 * when this returns; the child binds it a moment later. */
int sol_child_free_port(int lo, int hi, int *port);

#endif
