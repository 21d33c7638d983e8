/*
 * test_notify.c - the sd_notify sender: path and abstract sockets, a full
 * queue that must not block, errors, NOTIFY_SOCKET and WATCHDOG_USEC.
 */
#include "check.h"
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A receiving socket at `path` ("/..." or "@..."); returns its fd. */
static int bind_dgram(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    memcpy(sa.sun_path, path, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    else
        salen++;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, salen) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int recv_text(int fd, char *buf, size_t n)
{
    ssize_t got = recv(fd, buf, n - 1, MSG_DONTWAIT);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return (int)got;
}

static void test_path_socket(void)
{
    char dir[] = "/tmp/sollol-notify-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[128];
    snprintf(path, sizeof path, "%s/sock", dir);
    int fd = bind_dgram(path);
    CHECK(fd >= 0, "bind %s", path);
    CHECK(sol_notify_send(path, "READY=1\nSTATUS=2 of 3 node(s) up") == 1, "send");
    char buf[256];
    CHECK(recv_text(fd, buf, sizeof buf) > 0 &&
              strcmp(buf, "READY=1\nSTATUS=2 of 3 node(s) up") == 0,
          "got '%s'", buf);

    /* Through the environment, as systemd passes it. */
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK(sol_notify("STOPPING=1") == 1, "sol_notify");
    CHECK(recv_text(fd, buf, sizeof buf) > 0 && strcmp(buf, "STOPPING=1") == 0, "got '%s'", buf);

    /* Nobody reads: the queue fills and sending fails at once instead of
     * blocking the loop. */
    int failed = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 2000 && !failed; i++)
        failed = sol_notify("WATCHDOG=1") < 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(failed && errno == EAGAIN, "a full queue is EAGAIN (failed=%d errno=%d)", failed, errno);
    CHECK(s < 5.0, "never waits (%.2fs)", s);

    close(fd);
    unlink(path);
    rmdir(dir);
    /* The socket is gone: an error, not a crash or a hang. */
    CHECK(sol_notify("READY=1") < 0, "no listener");
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void)
{
    char name[64];
    snprintf(name, sizeof name, "@sollol-test-notify-%ld", (long)getpid());
    int fd = bind_dgram(name);
    CHECK(fd >= 0, "bind %s", name);
    CHECK(sol_notify_send(name, "READY=1") == 1, "send to %s", name);
    char buf[64];
    CHECK(recv_text(fd, buf, sizeof buf) > 0 && strcmp(buf, "READY=1") == 0, "got '%s'", buf);
    close(fd);
}

static void test_environment(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK(sol_notify("READY=1") == 0, "no NOTIFY_SOCKET: nothing to do");
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK(sol_notify("READY=1") == 0, "empty NOTIFY_SOCKET: nothing to do");
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    CHECK(sol_notify("READY=1") < 0 && errno == EINVAL, "relative path refused");
    unsetenv("NOTIFY_SOCKET");
    char longpath[300];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    CHECK(sol_notify_send(longpath, "X=1") < 0 && errno == EINVAL, "too long for sun_path");

    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK(sol_notify_watchdog_usec() == 0, "no watchdog");
    setenv("WATCHDOG_USEC", "30000000", 1);
    CHECK(sol_notify_watchdog_usec() == 30000000u, "30 s");
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(sol_notify_watchdog_usec() == 30000000u, "for this process");
    setenv("WATCHDOG_PID", "1", 1);
    CHECK(sol_notify_watchdog_usec() == 0, "for another process");
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "12abc", 1);
    CHECK(sol_notify_watchdog_usec() == 0, "garbage");
    setenv("WATCHDOG_USEC", "0", 1);
    CHECK(sol_notify_watchdog_usec() == 0, "zero");
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    test_path_socket();
    test_abstract_socket();
    test_environment();
    return check_summary();
}
