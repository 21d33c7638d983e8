/*
 * test_limits.c - the parts of the connection limits that need no client:
 * the loopback check behind the start-up warning about an open listener,
 * and the values passed to libmicrohttpd (per-address backstop, pool size).
 * The limits themselves are exercised end to end in tests/e2e/test_hostile.py.
 */
#include "check.h"

#include "base/limits.h"
#include "sollol/mhd_uv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bound4(const char *ip)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_loopback(void)
{
    int fd = bound4("127.0.0.1");
    CHECK(fd >= 0, "bind 127.0.0.1");
    CHECK(sol_socket_is_loopback(fd), "127.0.0.1 is loopback");
    close(fd);
    fd = bound4("127.0.0.2");
    if (fd >= 0) { /* all of 127/8 is loopback on Linux */
        CHECK(sol_socket_is_loopback(fd), "127.0.0.2 is loopback");
        close(fd);
    }
    /* Not bound: 0.0.0.0, i.e. every interface. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(!sol_socket_is_loopback(fd), "unbound IPv4 socket (0.0.0.0) is not loopback");
    close(fd);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd >= 0) {
        CHECK(!sol_socket_is_loopback(fd), "unbound IPv6 socket (::) is not loopback");
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            CHECK(sol_socket_is_loopback(fd), "::1 is loopback");
        close(fd);
    }
    CHECK(!sol_socket_is_loopback(-1), "bad descriptor");
}

static void test_mhd_values(void)
{
    struct sol_limits l;
    struct sol_limits_conf c = {.max_url_bytes = 8192,
                                .max_header_bytes = 32768,
                                .max_per_client = 256,
                                .header_timeout_ms = 30000,
                                .idle_timeout_ms = 300000};
    sol_limits_init(&l, NULL, &c);
    CHECK(sol_limits_mhd_per_ip(&l) == 512, "backstop at twice the soft limit");
    CHECK(sol_limits_mhd_pool(&l) == 8192 + 32768 + 4096,
          "pool holds target + headers + 4 KiB: %zu", sol_limits_mhd_pool(&l));
    CHECK(sol_limits_connections(&l) == 0, "no connection yet");
    c.max_per_client = 0;
    c.max_header_bytes = 1 << 20;
    sol_limits_init(&l, NULL, &c);
    CHECK(sol_limits_mhd_per_ip(&l) == 0, "no per-address limit");
    CHECK(sol_limits_mhd_pool(&l) == 8192 + (1 << 20) + 4096,
          "pool holds target + headers + 4 KiB");
    c.max_url_bytes = 256;
    c.max_header_bytes = 1024;
    sol_limits_init(&l, NULL, &c);
    CHECK(sol_limits_mhd_pool(&l) == 16 * 1024, "pool never below 16 KiB: %zu",
          sol_limits_mhd_pool(&l));
    CHECK(sol_limits_sweep(&l, 1u << 30) == 0, "nothing to cut");
}

int main(void)
{
    test_loopback();
    test_mhd_values();
    return check_summary();
}
