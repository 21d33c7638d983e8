/*
 * check.h - the unit tests' one assertion macro and summary line.
 *
 * CHECK(cond, fmt, ...) counts a check and, when it fails, prints
 * file:line, the condition and a printf-style context. check_summary()
 * prints "N passed, M failed" (the line CI reads) and returns main's exit
 * status. Include once per test program.
 */
#ifndef SOLLOL_TEST_CHECK_H
#define SOLLOL_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
