/*
 * llama_state.c - the llama-server stand-in's program state (g_ls) and the
 * small helpers every part of it uses: the bottom of the stand-in, so
 * llama_gen.c and llama_http.c reach the state without depending on
 * llama_server.c (which calls down into them).
 */
#include "llama_sim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

struct llama_sim g_ls;

double ms_between(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e6 : 0.0;
}

void logf_(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t rc = write(2, line, (size_t)n); /* one write: lines never interleave */
    (void)rc;
}

void die_oom(void)
{
    logf_("out of memory");
    standin_abort();
}

void put_double(struct sbuf *b, double v)
{
    if (!isfinite(v))
        v = 0;
    sb_printf(b, "%.17g", v);
}
