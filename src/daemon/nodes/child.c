/*
 * child.c - supervised child processes (see child.h).
 */
#include "nodes/child.h"

#include "sollol/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ARGS 128

static void handle_closed(uv_handle_t *h)
{
    struct sol_child *ch = h->data;
    if (--ch->handles > 0)
        return;
    void (*on_closed)(void *) = ch->on_closed;
    void *owner = ch->owner;
    sol_buf_free(&ch->partial[0]);
    sol_buf_free(&ch->partial[1]);
    free(ch);
    if (on_closed)
        on_closed(owner);
}

static void line(struct sol_child *ch, const char *s, size_t n)
{
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n > SOL_CHILD_LINE_MAX)
        n = SOL_CHILD_LINE_MAX;
    if (!ch->quiet)
        SOL_INFO("[%s] %.*s", ch->label, (int)n, s);
    unsigned slot = (ch->tail_head + ch->tail_count) % SOL_CHILD_TAIL;
    if (ch->tail_count == SOL_CHILD_TAIL)
        ch->tail_head = (ch->tail_head + 1) % SOL_CHILD_TAIL;
    else
        ch->tail_count++;
    memcpy(ch->tail[slot], s, n);
    ch->tail[slot][n] = '\0';
    if (ch->on_line)
        ch->on_line(ch->owner, s, n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char scratch[16384]; /* one read at a time, on the loop thread */
    buf->base = scratch;
    buf->len = sizeof scratch;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sol_child *ch = s->data;
    struct sol_buf *part = &ch->partial[s == (uv_stream_t *)&ch->pipes[1]];
    if (n < 0) { /* end of output (the process exited or closed it) */
        if (sol_buf_pending(part))
            line(ch, part->data + part->off, sol_buf_pending(part));
        sol_buf_clear(part);
        uv_read_stop(s);
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, handle_closed);
        return;
    }
    const char *p = buf->base;
    size_t left = (size_t)n;
    while (left) {
        const char *nl = memchr(p, '\n', left);
        size_t take = nl ? (size_t)(nl - p) + 1 : left;
        if (nl && sol_buf_pending(part) == 0) {
            line(ch, p, take); /* whole line in this read: no copy */
        } else {
            sol_buf_append(part, p, take);
            /* A line without end is cut, not buffered without bound. */
            if (nl || sol_buf_pending(part) > 4 * SOL_CHILD_LINE_MAX) {
                line(ch, part->data + part->off, sol_buf_pending(part));
                sol_buf_clear(part);
            }
        }
        p += take;
        left -= take;
    }
}

static void on_process_exit(uv_process_t *p, int64_t status, int sig)
{
    struct sol_child *ch = p->data;
    ch->running = 0;
    ch->exit_status = status;
    ch->term_signal = sig;
    uv_timer_stop(&ch->kill_timer);
    if (!uv_is_closing((uv_handle_t *)&ch->kill_timer))
        uv_close((uv_handle_t *)&ch->kill_timer, handle_closed);
    uv_close((uv_handle_t *)&ch->proc, handle_closed);
    if (ch->on_exit)
        ch->on_exit(ch);
}

static void on_kill_timer(uv_timer_t *t)
{
    struct sol_child *ch = t->data;
    if (ch->running && ch->pid > 0) {
        SOL_WARN("[%s] did not exit %u ms after SIGTERM: SIGKILL", ch->label, ch->grace_ms);
        kill(-ch->pid, SIGKILL);
        kill(ch->pid, SIGKILL);
    }
}

void sol_child_stop(struct sol_child *ch)
{
    if (!ch || !ch->running || ch->stop_requested)
        return;
    ch->stop_requested = 1;
    kill(-ch->pid, SIGTERM); /* its process group (own session: UV_PROCESS_DETACHED) */
    kill(ch->pid, SIGTERM);
    uv_timer_start(&ch->kill_timer, on_kill_timer, ch->grace_ms, 0);
}

void sol_child_kill(struct sol_child *ch)
{
    if (!ch || !ch->running)
        return;
    ch->stop_requested = 1;
    uv_timer_stop(&ch->kill_timer);
    kill(-ch->pid, SIGKILL);
    kill(ch->pid, SIGKILL);
}

struct sol_child *sol_child_spawn(const struct sol_child_opts *o, char *err, size_t errlen)
{
    struct sol_child *ch = calloc(1, sizeof *ch);
    if (!ch) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(ch->label, sizeof ch->label, "%s", o->label);
    ch->grace_ms = o->grace_ms;
    ch->on_line = o->on_line;
    ch->on_exit = o->on_exit;
    ch->on_closed = o->on_closed;
    ch->owner = o->owner;
    ch->ud = o->ud;
    ch->quiet = o->quiet;
    /* sollol-exec PPID PROGRAM ARGS...: PDEATHSIG, a parent check, exec. */
    char ppid[24];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    char *args[MAX_ARGS + 3];
    size_t na = 0;
    args[na++] = (char *)o->exec_path;
    args[na++] = ppid;
    for (size_t i = 0; o->argv[i] && na < MAX_ARGS + 2; i++)
        args[na++] = o->argv[i];
    args[na] = NULL;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(o->loop, &ch->pipes[i], 0);
        ch->pipes[i].data = ch;
    }
    uv_timer_init(o->loop, &ch->kill_timer);
    ch->kill_timer.data = ch;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&ch->pipes[0]},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&ch->pipes[1]},
    };
    uv_process_options_t po = {
        .exit_cb = on_process_exit,
        .file = o->exec_path,
        .args = args,
        .flags = UV_PROCESS_DETACHED, /* setsid: its own process group */
        .stdio_count = 3,
        .stdio = stdio,
        .env = o->env,
    };
    ch->proc.data = ch;
    ch->handles = 4; /* two pipes, the kill timer, the process */
    int rc = uv_spawn(o->loop, &ch->proc, &po);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start %.60s (%.150s via %.150s): %.60s", o->label, o->argv[0],
                 o->exec_path, uv_strerror(rc));
        /* A failed uv_spawn leaves the process handle initialised: close it too. */
        uv_close((uv_handle_t *)&ch->proc, handle_closed);
        uv_close((uv_handle_t *)&ch->kill_timer, handle_closed);
        uv_close((uv_handle_t *)&ch->pipes[0], handle_closed);
        uv_close((uv_handle_t *)&ch->pipes[1], handle_closed);
        return NULL;
    }
    ch->running = 1;
    ch->pid = ch->proc.pid;
    uv_read_start((uv_stream_t *)&ch->pipes[0], on_alloc, on_read);
    uv_read_start((uv_stream_t *)&ch->pipes[1], on_alloc, on_read);
    SOL_INFO("started %s (pid %d): %s", ch->label, ch->pid, o->argv[0]);
    return ch;
}

/* A line that says why a llama.cpp program stopped: ggml's and llama.cpp's
 * error lines ("E ..." with the log prefix off, "... E ..." with it on),
 * the RPC backend's source file, or an "error:" message. */
static int is_cause(const char *l)
{
    if (!l[0])
        return 0;
    return strncmp(l, "E ", 2) == 0 || strstr(l, " E ") != NULL ||
           strstr(l, "ggml-rpc.cpp") != NULL || strstr(l, "error:") != NULL ||
           strstr(l, "unknown argument") != NULL || strstr(l, "GGML_ASSERT") != NULL;
}

/* An abort's own line: "file.cpp:NNN: message" (GGML_ABORT, GGML_ASSERT).
 * It is written straight to stderr while llama.cpp's other lines go
 * through a log thread, so it may come before or after them. */
static int is_abort_site(const char *l)
{
    if (strstr(l, "GGML_ASSERT"))
        return 1;
    for (const char *p = l; (p = strstr(p, ".c")) != NULL; p++) {
        const char *q = p + 2;
        if (strncmp(q, "pp", 2) == 0)
            q += 2;
        if (*q != ':' || q[1] < '0' || q[1] > '9')
            continue;
        for (q++; *q >= '0' && *q <= '9'; q++)
            ;
        if (*q == ':')
            return 1;
    }
    return 0;
}

const char *sol_child_cause_line(const char *const *lines, unsigned n)
{
    for (unsigned i = n; i-- > 0;)
        if (is_abort_site(lines[i]))
            return lines[i];
    for (unsigned i = n; i-- > 0;)
        if (is_cause(lines[i]))
            return lines[i];
    return NULL;
}

void sol_child_tail(const struct sol_child *ch, unsigned k, char *out, size_t outlen, char *cause,
                    size_t causelen)
{
    const char *lines[SOL_CHILD_TAIL];
    unsigned n = 0;
    for (unsigned i = 0; i < ch->tail_count; i++)
        lines[n++] = ch->tail[(ch->tail_head + i) % SOL_CHILD_TAIL];
    size_t off = 0;
    out[0] = '\0';
    for (unsigned i = n > k ? n - k : 0; i < n && off + 1 < outlen; i++) {
        int w = snprintf(out + off, outlen - off, "%s%s", off ? " | " : "", lines[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (cause) {
        const char *c = sol_child_cause_line(lines, n);
        snprintf(cause, causelen, "%s", c ? c : "");
    }
}

int sol_child_free_port(int lo, int hi, int *port)
{
    if (lo <= 0 || hi < lo)
        lo = hi = 0;
    for (int p = lo; p <= hi; p++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                 getsockname(fd, (struct sockaddr *)&a, &len) == 0;
        close(fd);
        if (ok) {
            *port = ntohs(a.sin_port);
            return 0;
        }
    }
    return -1;
}
