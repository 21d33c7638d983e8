/*
 * notify.h - the service manager's notification protocol (systemd's
 * sd_notify): readiness, status lines, reload and stop announcements and
 * watchdog keep-alives, sent as datagrams to $NOTIFY_SOCKET.
 *
 * With libsystemd (found by pkg-config at build time) the messages go
 * through its sd_notify()/sd_watchdog_enabled(); without it, through
 * sol_notify_send() below, which speaks the same protocol (one AF_UNIX
 * SOCK_DGRAM datagram per message, abstract sockets spelled "@name").
 * Everything is a no-op when $NOTIFY_SOCKET is unset, so the daemon runs
 * the same outside systemd. Sending never blocks (MSG_DONTWAIT): a
 * manager that does not read is not allowed to stall the loop.
 */
#ifndef SOLLOL_NOTIFY_H
#define SOLLOL_NOTIFY_H

#include <stdint.h>

/*
 * Sends `msg` ("READY=1", "STATUS=...\nREADY=1", newline-separated
 * assignments) to the manager. Returns 1 when sent, 0 when there is no
 * $NOTIFY_SOCKET (nothing to do), -1 when the socket named there could not
 * be reached (errno set; the caller may log it, never fatal).
 */
int sol_notify(const char *msg);

/*
 * The protocol itself, independent of libsystemd: sends `msg` as one
 * datagram to the AF_UNIX socket `path` ("/run/..." or "@abstract").
 * Returns 1 when sent, -1 on error (errno set). Exposed for tests; used by
 * sol_notify() when built without libsystemd.
 */
int sol_notify_send(const char *path, const char *msg);

/*
 * The watchdog interval the manager asks for, in microseconds, from
 * $WATCHDOG_USEC (honouring $WATCHDOG_PID: 0 when it names another
 * process). 0 = no watchdog. Keep-alives ("WATCHDOG=1") should be sent
 * at half that interval.
 */
uint64_t sol_notify_watchdog_usec(void);

#endif
