/*
 * sollol-exec - the tiny wrapper sollold starts its children through
 * (llama-server, rpc-server): `sollol-exec PPID PROGRAM [ARGS...]`.
 *
 * It asks the kernel to SIGKILL it when its parent dies
 * (PR_SET_PDEATHSIG), then execs PROGRAM, which keeps that setting. So a
 * child never outlives sollold, even after a SIGKILL of the daemon. The
 * parent may already be gone between fork and prctl: the getppid() check
 * against the PID sollold passed closes that race. libuv's spawn already put
 * the child in its own session (UV_PROCESS_DETACHED), so the daemon can
 * signal the whole process group.
 *
 * It also closes every descriptor above stderr before the exec: libuv's
 * spawn closes only those marked close-on-exec, and libcurl opens its
 * sockets without the mark, so a child would otherwise keep sollold's node
 * connections open (a cancelled request's node would not see the close
 * while the child lives).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static void close_inherited(void)
{
    if (close_range(3, ~0U, 0) == 0)
        return;
    /* Kernels before 5.9: close one by one up to the open-file limit. */
    struct rlimit rl;
    long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                   ? (long)rl.rlim_cur
                   : 65536;
    for (long fd = 3; fd < max; fd++)
        close((int)fd);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sollol-exec PPID PROGRAM [ARGS...]\n");
        return 127;
    }
    char *end;
    long ppid = strtol(argv[1], &end, 10);
    if (*end || ppid <= 1) {
        fprintf(stderr, "sollol-exec: invalid parent pid '%s'\n", argv[1]);
        return 127;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        fprintf(stderr, "sollol-exec: prctl: %s\n", strerror(errno));
        return 127;
    }
    if (getppid() != (pid_t)ppid)
        return 127; /* the daemon died before prctl took effect */
    close_inherited();
    execvp(argv[2], argv + 2);
    fprintf(stderr, "sollol-exec: cannot run %s: %s\n", argv[2], strerror(errno));
    return 127;
}
