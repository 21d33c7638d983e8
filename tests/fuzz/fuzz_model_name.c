/*
 * libFuzzer target: model name canonicalisation (model_name.c), as names
 * arrive from clients (request bodies) and nodes (/api/tags).
 *
 * Checked beyond memory safety, for arbitrary bytes up to the first NUL:
 *  - the result is 0 or -1; on -1 out is "" (when outlen > 0);
 *  - a canonical name is lowercase, at most 3 '/'-separated parts plus a
 *    tag, and canonicalising it again gives it back (idempotent), also in
 *    place (out == in);
 *  - ASCII case does not matter: the upper-cased input gives the same name;
 *  - a too-small out buffer fails cleanly (and exactly when it is too small);
 *  - the key is never 0 and ignores ASCII case.
 */
#include "fuzz_util.h"

#include "base/model_name.h"

#include <ctype.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    REQUIRE(in);
    memcpy(in, data, size);
    in[size] = '\0';

    char out[SOL_MODEL_NAME_MAX];
    memset(out, 'x', sizeof out);
    int rc = sol_model_canonical(in, out, sizeof out);
    REQUIRE(rc == 0 || rc == -1);
    if (rc < 0) {
        REQUIRE(out[0] == '\0');
        free(in);
        return 0;
    }
    size_t len = strlen(out);
    REQUIRE(len > 0 && len < sizeof out);
    int slashes = 0, colons_after_slash = 0;
    for (size_t i = 0; i < len; i++) {
        REQUIRE(!isupper((unsigned char)out[i]) && (unsigned char)out[i] > ' ');
        if (out[i] == '/') {
            slashes++;
            colons_after_slash = 0;
        } else if (out[i] == ':') {
            colons_after_slash++;
        }
    }
    REQUIRE(slashes <= 2 && colons_after_slash == 1); /* the tag is always present */

    char again[SOL_MODEL_NAME_MAX];
    REQUIRE(sol_model_canonical(out, again, sizeof again) == 0 && strcmp(again, out) == 0);
    char inplace[SOL_MODEL_NAME_MAX];
    memcpy(inplace, out, len + 1);
    REQUIRE(sol_model_canonical(inplace, inplace, sizeof inplace) == 0 &&
            strcmp(inplace, out) == 0);

    for (size_t i = 0; i < size; i++)
        in[i] = (char)toupper((unsigned char)in[i]);
    REQUIRE(sol_model_canonical(in, again, sizeof again) == 0 && strcmp(again, out) == 0);

    char small[SOL_MODEL_NAME_MAX];
    REQUIRE(sol_model_canonical(out, small, len) == -1 && small[0] == '\0');
    REQUIRE(sol_model_canonical(out, small, len + 1) == 0 && strcmp(small, out) == 0);

    uint64_t key = sol_model_key(out);
    REQUIRE(key != 0);
    for (size_t i = 0; i < len; i++)
        again[i] = (char)toupper((unsigned char)out[i]);
    again[len] = '\0';
    REQUIRE(sol_model_key(again) == key);
    free(in);
    return 0;
}
