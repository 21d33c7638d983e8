/*
 * bench_inspect - CPU time the daemon spends looking at one large request
 * body, in isolation: sol_inspect_body() (strict one-pass validation plus
 * the few members routing reads), then the conversation keys of prefix
 * affinity (another pass over the messages or the prompt), against a full
 * DOM parse with cJSON for comparison.
 *
 * Bodies of 1 MiB: a chat whose last message is long English-like text, a
 * chat of many short turns, a generate prompt, and a chat carrying a base64
 * image (the long runs an image adds). Thread CPU time, median of runs.
 *
 * Usage: bench_inspect [MiB] [runs]   (default 1 MiB, 9 runs). Prints one
 * line per body: microseconds per body and throughput for each step.
 */
#include "base/affinity.h"
#include "base/inspect.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

struct body {
    const char *name;
    char *p;
    size_t len;
};

static const char *const words[] = {"the",   "model",   "routing", "of",    "a",       "request",
                                    "node",  "is",      "cheap",   "when",  "nothing", "copies",
                                    "bytes", "latency", "stream",  "token", "and",     "then"};

static size_t put(char *dst, size_t off, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (off + n < cap)
        memcpy(dst + off, s, n);
    return off + n;
}

/* Text of roughly `n` bytes of words, with a newline escape now and then. */
static size_t text(char *dst, size_t off, size_t cap, size_t n)
{
    size_t end = off + n;
    while (off < end && off + 16 < cap) {
        off = put(dst, off, cap, words[rnd() % (sizeof words / sizeof *words)]);
        off = put(dst, off, cap, rnd() % 23 == 0 ? "\\n" : " ");
    }
    return off;
}

static struct body make(const char *name, size_t size, int kind)
{
    size_t cap = size + 4096;
    char *b = malloc(cap);
    if (!b)
        abort();
    size_t o = 0;
    switch (kind) {
    case 0: /* one long user message */
        o = put(b, o, cap,
                "{\"model\":\"llama3.2:3b\",\"stream\":true,\"options\":{\"num_predict\":200},"
                "\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                "{\"role\":\"user\",\"content\":\"");
        o = text(b, o, cap, size - o - 16);
        o = put(b, o, cap, "\"}]}");
        break;
    case 1: /* many turns */
        o = put(b, o, cap, "{\"model\":\"llama3.2:3b\",\"messages\":[");
        for (int i = 0; o + 600 < size; i++) {
            o = put(b, o, cap, i ? ",{\"role\":\"" : "{\"role\":\"");
            o = put(b, o, cap, i % 2 ? "assistant" : "user");
            o = put(b, o, cap, "\",\"content\":\"");
            o = text(b, o, cap, 300 + rnd() % 200);
            o = put(b, o, cap, "\"}");
        }
        o = put(b, o, cap, "]}");
        break;
    case 2: /* generate */
        o = put(b, o, cap, "{\"model\":\"llama3.2:3b\",\"prompt\":\"");
        o = text(b, o, cap, size - o - 16);
        o = put(b, o, cap, "\",\"stream\":false}");
        break;
    default: { /* an image */
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        o = put(b, o, cap,
                "{\"model\":\"llava:7b\",\"messages\":[{\"role\":\"user\",\"content\":\"What is "
                "in this picture?\",\"images\":[\"");
        while (o + 16 < size)
            b[o++] = b64[rnd() % 64];
        o = put(b, o, cap, "\"]}]}");
        break;
    }
    }
    if (o >= cap)
        abort();
    struct body r = {name, b, o};
    return r;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    double mib = argc > 1 ? atof(argv[1]) : 1.0;
    int runs = argc > 2 ? atoi(argv[2]) : 9;
    if (mib <= 0 || runs < 1 || runs > 1000) {
        fprintf(stderr, "usage: bench_inspect [MiB] [runs]\n");
        return 2;
    }
    size_t size = (size_t)(mib * 1048576.0);
    struct body bodies[] = {make("chat, one long message", size, 0),
                            make("chat, many turns", size, 1), make("generate prompt", size, 2),
                            make("chat with base64 image", size, 3)};
    printf("%-24s %9s %12s %8s %12s %12s %8s\n", "body", "bytes", "inspect us", "GB/s",
           "+affinity us", "cJSON us", "x DOM");
    for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
        struct body *bd = &bodies[b];
        double t_insp[1000], t_aff[1000], t_dom[1000];
        for (int r = 0; r < runs; r++) {
            struct sol_body_info info;
            char err[256];
            double t0 = now_ns();
            int st = sol_inspect_body(bd->p, bd->len, 1, 128, &info, err, sizeof err);
            double t1 = now_ns();
            if (st) {
                fprintf(stderr, "%s: inspect failed: %s\n", bd->name, err);
                return 1;
            }
            struct sol_affinity_keys k;
            if (info.messages.p)
                sol_affinity_keys_chat(&info.messages, "llama3.2:3b", &k);
            else
                sol_affinity_keys_generate(bd->p, bd->len, "llama3.2:3b", &k);
            double t2 = now_ns();
            cJSON *dom = cJSON_ParseWithLength(bd->p, bd->len);
            double t3 = now_ns();
            if (!dom) {
                fprintf(stderr, "%s: cJSON failed\n", bd->name);
                return 1;
            }
            cJSON_Delete(dom);
            t_insp[r] = (t1 - t0) / 1e3;
            t_aff[r] = (t2 - t1) / 1e3;
            t_dom[r] = (t3 - t2) / 1e3;
        }
        double mi = median(t_insp, runs), ma = median(t_aff, runs), md = median(t_dom, runs);
        printf("%-24s %9zu %12.1f %8.2f %12.1f %12.1f %8.1f\n", bd->name, bd->len, mi,
               (double)bd->len / (mi * 1e3), ma, md, md / (mi + ma));
        free(bd->p);
    }
    return 0;
}
