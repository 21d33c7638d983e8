/*
 * discovery_targets.c - parsing discovery's address ranges (see
 * discovery_targets.h).
 */
#include "base/discovery_targets.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_entry(const char *b, const char *e, int default_port,
                       struct sol_discovery_range *r, char *why, size_t whylen)
{
    char text[64];
    size_t len = (size_t)(e - b);
    if (len == 0 || len >= sizeof text) {
        snprintf(why, whylen, "'%.*s': expected A.B.C.D[/N][:PORT]", (int)(len < 60 ? len : 60), b);
        return -1;
    }
    memcpy(text, b, len);
    text[len] = '\0';
    int port = default_port;
    char *colon = strchr(text, ':');
    if (colon && strchr(colon + 1, ':')) {
        snprintf(why, whylen, "'%s': IPv6 is not scanned (a /64 alone is 2^64 addresses)", text);
        return -1;
    }
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || p < 1 || p > 65535) {
            snprintf(why, whylen, "'%s': invalid port", text);
            return -1;
        }
        port = (int)p;
        *colon = '\0';
    }
    int prefix = 32;
    char *slash = strchr(text, '/');
    if (slash) {
        char *end;
        long n = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end || n < 0 || n > 32) {
            snprintf(why, whylen, "'%.*s': invalid prefix length (0..32)", (int)len, b);
            return -1;
        }
        prefix = (int)n;
        *slash = '\0';
    }
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1) {
        snprintf(why, whylen, "'%.*s': not an IPv4 address or range (A.B.C.D[/N][:PORT])", (int)len,
                 b);
        return -1;
    }
    uint32_t ip = ntohl(a.s_addr);
    uint64_t size = 1ull << (32 - prefix);
    uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
    uint32_t first = ip & mask;
    uint64_t count = size;
    if (prefix <= 30) { /* not the network and broadcast addresses */
        first++;
        count -= 2;
    }
    if (count > SOL_DISCOVERY_MAX_HOSTS) {
        snprintf(why, whylen,
                 "'%.*s' holds %llu addresses; at most %u may be scanned (a /20): "
                 "list smaller ranges",
                 (int)len, b, (unsigned long long)count, SOL_DISCOVERY_MAX_HOSTS);
        return -1;
    }
    r->first = first;
    r->count = (uint32_t)count;
    r->port = port;
    return 0;
}

int sol_discovery_parse(const char *text, int default_port, struct sol_discovery_targets *out,
                        char *why, size_t whylen)
{
    struct sol_discovery_targets t = {0};
    const char *p = text ? text : "";
    while (*p) {
        const char *e = strchr(p, ',');
        if (!e)
            e = p + strlen(p);
        const char *b = p, *end = e;
        while (b < end && isspace((unsigned char)*b))
            b++;
        while (end > b && isspace((unsigned char)end[-1]))
            end--;
        if (b < end) {
            struct sol_discovery_range r;
            if (parse_entry(b, end, default_port, &r, why, whylen) < 0)
                goto fail;
            if (t.hosts + r.count > SOL_DISCOVERY_MAX_HOSTS) {
                snprintf(why, whylen, "the ranges hold more than %u addresses together",
                         SOL_DISCOVERY_MAX_HOSTS);
                goto fail;
            }
            if (out) {
                struct sol_discovery_range *n = realloc(t.ranges, (t.n + 1) * sizeof *n);
                if (!n) {
                    snprintf(why, whylen, "out of memory");
                    goto fail;
                }
                t.ranges = n;
                t.ranges[t.n] = r;
            }
            t.n++;
            t.hosts += r.count;
        }
        p = *e ? e + 1 : e;
    }
    if (out)
        *out = t;
    return 0;
fail:
    free(t.ranges);
    return -1;
}

void sol_discovery_targets_free(struct sol_discovery_targets *t)
{
    free(t->ranges);
    memset(t, 0, sizeof *t);
}
