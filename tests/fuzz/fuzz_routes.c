/*
 * libFuzzer target: the route table lookup (routes.c) for an arbitrary
 * method and path, as a client's request line gives them.
 *
 * Input: method, a NUL byte, path (without the NUL the whole input is the
 * path and the method is taken from its first byte). Checked beyond memory
 * safety: a found route has a kind other than NONE and a path that
 * matches (exactly, or as a prefix when it ends in '/'), the generic
 * `/v1/...` route only for /v1/ paths; the method bit is a single bit; the
 * Allow header is a terminated, non-empty list at any buffer size.
 */
#include "fuzz_util.h"

#include "base/routes.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "DELETE", "PUT", "get", ""};
    char *buf = malloc(size + 1);
    REQUIRE(buf);
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *method, *path;
    char *nul = memchr(buf, '\0', size);
    if (nul) {
        method = buf;
        path = nul + 1;
    } else {
        method = methods[size ? data[0] % 7 : 0];
        path = buf;
    }

    unsigned bit = sol_method_bit(method);
    REQUIRE(bit && (bit & (bit - 1)) == 0 && bit <= SOL_M_OTHER);
    if (strcmp(method, "POST") == 0)
        REQUIRE(bit == SOL_M_POST);

    const struct sol_route *r = sol_route_find(path);
    if (r) {
        REQUIRE(r->kind != SOL_ROUTE_NONE); /* NONE is the caller's 404, never a table row */
        REQUIRE(r->methods != 0 && r->path);
        size_t pl = strlen(r->path);
        if (pl && r->path[pl - 1] == '/' && strcmp(r->path, "/") != 0)
            REQUIRE(strncmp(path, r->path, pl) == 0 || strncmp(path, "/v1/", 4) == 0);
        else
            REQUIRE(strcmp(path, r->path) == 0 || strncmp(path, "/v1/", 4) == 0);
        if ((r->flags & SOL_RF_NEEDS_MODEL) == 0 && r->kind == SOL_ROUTE_PROXY)
            REQUIRE(r->flags & (SOL_RF_RAW_BODY | SOL_RF_BATCH));
        for (size_t n = 1; n <= 48; n += 1 + n / 4) {
            char allow[48];
            memset(allow, 'x', sizeof allow);
            sol_route_allow_header(r, allow, n);
            REQUIRE(fuzz_terminated(allow, n));
        }
        char allow[128];
        sol_route_allow_header(r, allow, sizeof allow);
        REQUIRE(allow[0] != '\0');
    }
    free(buf);
    return 0;
}
