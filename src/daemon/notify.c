/*
 * notify.c - the sd_notify protocol, spoken directly (see notify.h).
 *
 * Not libsystemd's sd_notify(): it sends on a blocking socket, and a
 * datagram socket's queue is only net.unix.max_dgram_qlen (10) messages
 * deep, so a manager that stops reading would stall the whole loop (the
 * watchdog pings alone fill it in seconds; the e2e test saw the daemon
 * hang in sendmsg and ignore SIGTERM). Sending with MSG_DONTWAIT drops a
 * message instead, which is what a keep-alive or a status line can afford.
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sol_notify_send(const char *path, const char *msg)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len < 2 || len >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, len);
    /* Abstract namespace: a leading NUL instead of '@', and the address
     * length counts exactly the name (no terminating NUL). */
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t salen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
                       (const struct sockaddr *)&sa, salen);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    return 1;
}

int sol_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    return sol_notify_send(path, msg);
}

uint64_t sol_notify_watchdog_usec(void)
{
    const char *s = getenv("WATCHDOG_USEC");
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(s, &end, 10);
    if (errno || *end || usec == 0)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        unsigned long long p = strtoull(pid, &end, 10);
        if (*end || p != (unsigned long long)getpid())
            return 0; /* meant for another process (a parent shell, say) */
    }
    return usec;
}
