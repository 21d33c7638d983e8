/*
 * test_gate.c - the security gate (proxy/gate.c) on real connections: a
 * libmicrohttpd server on a loopback ephemeral port whose access handler
 * is the gate alone, driven by raw HTTP/1.1 from this thread. Links the
 * proxy floor alone; the daemon is a struct with the config, limits, auth
 * and metrics the gate reads. What it answers: limits before access control
 * (414 even without a key), 401/403 by key and route, a refusal of a body
 * on its way held until the body is in (and sent at once with Expect:
 * 100-continue), public paths open, and the caller's key handed on.
 */
#include "check.h"

#include "base/auth.h"
#include "base/config.h"
#include "base/limits.h"
#include "base/metrics.h"
#include "daemon-t.h"
#include "proxy/gate.h"
#include "sollol/sha256.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static struct sol_config cfg;
static struct sol_daemon d;
static int port;

/* Per request: the gate's verdict as the handler saw it. */
struct seen {
    int gate;
    struct sol_auth_verdict held;
    const struct sol_auth_key *key;
    size_t body;
};
static char last_key[64]; /* name of the key the last admitted request carried */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    (void)upload;
    struct seen *s = *con_cls;
    if (!s) {
        s = calloc(1, sizeof *s);
        *con_cls = s;
        enum MHD_Result out = MHD_NO;
        s->gate = sol_gate_check(&d, conn, url, method, &s->key, &out, &s->held);
        if (s->gate == 1)
            return out;
        return MHD_YES;
    }
    if (*upload_size) { /* dropped unread when refused, counted otherwise */
        s->body += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    if (s->gate == 2)
        return sol_auth_refuse(conn, &s->held, 0);
    snprintf(last_key, sizeof last_key, "%s", s->key ? s->key->name : "-");
    return reply(conn, 200, "passed");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    sol_limits_request_done(&d.limits, conn);
    free(*con_cls);
    *con_cls = NULL;
}

/* Sends `req` on a new connection, reads until the server closes or the
 * answer has come (Content-Length), returns the status line's code. With
 * `then` non-NULL, it is sent after the first answer bytes or 300 ms of
 * silence (the body after a 100 Continue, or after nothing). */
static int exchange(const char *req, const char *then, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    (void)!write(fd, req, strlen(req));
    size_t n = 0;
    out[0] = '\0';
    int sent_then = then == NULL;
    for (int rounds = 0; rounds < 100 && n + 1 < outlen; rounds++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, 300);
        if (ready == 0 && !sent_then) {
            (void)!write(fd, then, strlen(then));
            sent_then = 1;
            continue;
        }
        if (ready <= 0)
            break;
        ssize_t got = read(fd, out + n, outlen - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        out[n] = '\0';
        if (!sent_then && strstr(out, "100 Continue")) {
            (void)!write(fd, then, strlen(then));
            sent_then = 1;
            char *rest = strstr(out, "\r\n\r\n");
            size_t skip = rest ? (size_t)(rest + 4 - out) : n;
            memmove(out, out + skip, n - skip + 1);
            n -= skip;
            continue;
        }
        const char *cl = strcasestr(out, "Content-Length:");
        const char *end = strstr(out, "\r\n\r\n");
        if (cl && end && n >= (size_t)(end + 4 - out) + strtoul(cl + 15, NULL, 10))
            break;
    }
    close(fd);
    int code = 0;
    sscanf(out, "HTTP/1.%*d %d", &code);
    return code;
}

static void hexkey(const char *secret, char *hex)
{
    unsigned char dgst[32];
    sol_sha256(secret, strlen(secret), dgst);
    sol_sha256_to_hex(dgst, hex);
}

static void setup(void)
{
    char err[512], ha[65], hr[65], keys[600];
    uv_loop_init(&loop);
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0, "%s", err);
    cfg.max_body_bytes = 4096;
    d.loop = &loop;
    d.cfg = &cfg;
    hexkey("alpha-secret", ha);
    hexkey("root-secret", hr);
    snprintf(keys, sizeof keys,
             "[{\"name\":\"alpha\",\"sha256\":\"%s\"},"
             "{\"name\":\"root\",\"sha256\":\"%s\",\"admin\":true}]",
             ha, hr);
    CHECK(sol_auth_init(&d.auth, keys, NULL, "[\"/api/version\"]", err, sizeof err) == 0, "%s",
          err);
    struct sol_limits_conf lc = {.max_url_bytes = 256,
                                 .max_header_bytes = 8192,
                                 .max_per_client = 64,
                                 .header_timeout_ms = 10000,
                                 .idle_timeout_ms = 10000};
    sol_limits_init(&d.limits, &loop, &lc);
    CHECK(sol_metrics_init(&d.metrics, 0) == 0, "metrics");
}

static void test_gate(struct MHD_Daemon *mhd)
{
    (void)mhd;
    char buf[4096];
    /* Limits come first: an over-long target is refused without a key. */
    char req[1024];
    char path[400];
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    CHECK(exchange(req, NULL, buf, sizeof buf) == 414, "long target: %.80s", buf);

    /* No key: 401 in Ollama's shape; a wrong key too. */
    CHECK(exchange("GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n", NULL, buf, sizeof buf) == 401,
          "no key: %.80s", buf);
    CHECK(strstr(buf, "{\"error\":") != NULL, "an error body: %s", buf);
    CHECK(exchange("GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n", NULL,
                   buf, sizeof buf) == 401,
          "wrong key: %.80s", buf);

    /* The right key passes, and the gate hands the key on. */
    CHECK(
        exchange("GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alpha-secret\r\n\r\n",
                 NULL, buf, sizeof buf) == 200,
        "alpha: %.80s", buf);
    CHECK(strcmp(last_key, "alpha") == 0, "key handed on: %s", last_key);

    /* An admin route wants an admin key. */
    CHECK(exchange("DELETE /api/delete HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alpha-secret"
                   "\r\nContent-Length: 0\r\n\r\n",
                   NULL, buf, sizeof buf) == 403,
          "alpha is no admin: %.80s", buf);
    CHECK(exchange("DELETE /api/delete HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer root-secret"
                   "\r\nContent-Length: 0\r\n\r\n",
                   NULL, buf, sizeof buf) == 200,
          "root is: %.80s", buf);
    CHECK(strcmp(last_key, "root") == 0, "root handed on: %s", last_key);

    /* A public path is open. */
    CHECK(exchange("GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n", NULL, buf, sizeof buf) == 200,
          "public: %.80s", buf);
    CHECK(strcmp(last_key, "-") == 0, "no key on a public path: %s", last_key);

    /* A refused body on its way is answered after it arrives (the client
     * sees the 401, not a reset)... */
    const char *body = "{\"model\":\"llama3.2\",\"prompt\":\"hi\"}";
    snprintf(req, sizeof req,
             "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    CHECK(exchange(req, NULL, buf, sizeof buf) == 401, "held until the body is in: %.80s", buf);
    /* ...but with Expect: 100-continue no body comes: answered at once. */
    snprintf(req, sizeof req,
             "POST /api/generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    CHECK(exchange(req, body, buf, sizeof buf) == 401, "answered before the body: %.80s", buf);
    CHECK(strstr(buf, "100 Continue") == NULL, "no 100 Continue first");

    /* Refusals are counted for /metrics by kind. */
    uint64_t refused = 0;
    for (unsigned i = 0; i < SOL_REFUSAL_KINDS; i++)
        refused += d.metrics.refused[i];
    CHECK(refused == 6, "six refusals counted: %llu", (unsigned long long)refused);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    setup();
    struct MHD_Daemon *mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, NULL,
        MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)&(struct sockaddr_in){.sin_family = AF_INET,
                                                       .sin_addr.s_addr = htonl(INADDR_LOOPBACK)},
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
        sol_limits_on_connection, &d.limits, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        sol_limits_mhd_pool(&d.limits), MHD_OPTION_END);
    CHECK(mhd != NULL, "MHD on loopback");
    if (!mhd)
        return check_summary();
    port = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    test_gate(mhd);
    MHD_stop_daemon(mhd);
    sol_limits_free(&d.limits);
    sol_auth_free(&d.auth);
    sol_metrics_free(&d.metrics);
    sol_config_free(&cfg);
    uv_loop_close(&loop);
    return check_summary();
}
