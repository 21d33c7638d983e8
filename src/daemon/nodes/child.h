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

/* Longest output line logged and passed to on_line. */
#define SOL_CHILD_LINE_MAX 1000
/* Output lines each child keeps for its exit report. */
#define SOL_CHILD_TAIL 8

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
    char **env;  /* the child's environment (NULL-terminated), or NULL: sollold's */
    int quiet;   /* output lines are not logged (on_line still gets them) */
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
    /* The last SOL_CHILD_TAIL output lines, oldest first from tail_head:
     * what a child that exits at once said (read them in on_exit). */
    char tail[SOL_CHILD_TAIL][SOL_CHILD_LINE_MAX + 1];
    unsigned tail_head, tail_count;
    /* private */
    uv_process_t proc;
    uv_pipe_t pipes[2];
    uv_timer_t kill_timer;
    int handles;
    int quiet;
    unsigned grace_ms;
    struct sol_buf partial[2];
    void (*on_line)(void *owner, const char *line, size_t len);
    void (*on_exit)(struct sol_child *ch);
    void (*on_closed)(void *owner);
    void *owner;
};

/*
 * Starts `sollol-exec <our pid> argv...`. Returns the child, or NULL with a
 * message in err naming the program (nothing is left running; on_closed
 * still runs once the handles have closed, so the caller's accounting
 * stays simple: count a child from this call to its on_closed).
 */
struct sol_child *sol_child_spawn(const struct sol_child_opts *o, char *err, size_t errlen);

/*
 * The child's last output lines joined with " | " into out (at most `k`),
 * and, when one of them names the cause of an abort (a ggml/llama.cpp
 * `E ...` line, `ggml-rpc.cpp:NNN`, `error:`), that line alone in cause
 * (may be NULL). Both are "" when the child said nothing.
 */
void sol_child_tail(const struct sol_child *ch, unsigned k, char *out, size_t outlen, char *cause,
                    size_t causelen);

/* The cause line among `n` output lines (see sol_child_tail), or NULL: the
 * last abort site ("file.cpp:NNN: ...", GGML_ASSERT) if any, else the last
 * error line. */
const char *sol_child_cause_line(const char *const *lines, unsigned n);

/* SIGTERM to the child's process group, SIGKILL after grace_ms. Idempotent;
 * NULL or an exited child is fine. */
void sol_child_stop(struct sol_child *ch);

/* SIGKILL to the child's process group now (a stop that must not run the
 * program's own shutdown). Counts as a requested stop. NULL or an exited
 * child is fine. */
void sol_child_kill(struct sol_child *ch);

/* A free loopback TCP port: the first free one in [lo, hi], or an
 * ephemeral one when lo is 0. Returns 0 with *port, or -1. The port is free
 * when this returns; the child binds it a moment later. */
int sol_child_free_port(int lo, int hi, int *port);

#endif
