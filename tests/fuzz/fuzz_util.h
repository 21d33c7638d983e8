/*
 * fuzz_util.h - what the libFuzzer targets share: the entry point's
 * prototype and REQUIRE, an assertion that aborts (so libFuzzer records the
 * input as a crash) in every build type.
 */
#ifndef SOLLOL_FUZZ_UTIL_H
#define SOLLOL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Nonzero when the NUL-terminated s lies inside buf[0..len). */
static inline int fuzz_terminated(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\0')
            return 1;
    return 0;
}

#endif
