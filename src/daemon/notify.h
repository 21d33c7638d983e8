/*
 * notify.h - the service manager's notification protocol (systemd's
 * sd_notify): readiness, status lines, reload and stop announcements and
 * watchdog keep-alives, sent as datagrams to $NOTIFY_SOCKET.
 *
 * The protocol is spoken directly, without libsystemd (notify.c says
 * why): one AF_UNIX SOCK_DGRAM datagram per message, abstract sockets
 * spelled "@name".
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
 * Sends `msg` as one datagram to the AF_UNIX socket `path` ("/run/..."
 * or "@abstract"), never blocking: a full queue is an error (EAGAIN), the
 * message is dropped. Returns 1 when sent, -1 on error (errno set).
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
