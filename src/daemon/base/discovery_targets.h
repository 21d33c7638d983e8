/*
 * discovery_targets.h - the address ranges discovery scans, as text and
 * parsed. Pure: config.c validates discovery.cidrs with it, discovery.c
 * scans what it returns.
 *
 * Targets are "A.B.C.D[/N][:PORT]" entries (comma-separated in text; the
 * config file may give a list). A range without a port uses the default
 * port (discovery.port), so the usual form is "192.168.1.0/24"; a port per
 * entry lets one scan cover nodes on different ports (and lets tests give
 * each simulator on 127.0.0.N its own ephemeral port). /31 and /32 ranges
 * are scanned whole, larger ones without their network and broadcast
 * addresses. At most SOL_DISCOVERY_MAX_HOSTS addresses in all: a /8 is a
 * config error, not a scan that never ends.
 */
#ifndef SOLLOL_DISCOVERY_TARGETS_H
#define SOLLOL_DISCOVERY_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/* Most addresses the configured ranges may hold together (a /20). */
#define SOL_DISCOVERY_MAX_HOSTS 4096u

/* One entry: `count` consecutive addresses from `first` (host byte order). */
struct sol_discovery_range {
    uint32_t first;
    uint32_t count;
    int port;
};

struct sol_discovery_targets {
    struct sol_discovery_range *ranges; /* owned */
    size_t n;
    uint32_t hosts; /* sum of counts */
};

/*
 * Parses `text` (see above; NULL or "" = no targets). With out == NULL it
 * only validates. Returns 0 (out filled, free it with
 * sol_discovery_targets_free), or -1 with a bare reason in why, naming the
 * entry ("'10.0.0.0/8' holds 16777214 addresses; at most 4096 ...").
 */
int sol_discovery_parse(const char *text, int default_port, struct sol_discovery_targets *out,
                        char *why, size_t whylen);

void sol_discovery_targets_free(struct sol_discovery_targets *t);

#endif
