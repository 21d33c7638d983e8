/*
 * fault.c - the active fault: its modes, its filter (count, scope, model) and
 * the decision, per request or per connection, whether it applies.
 *
 * One fault is active at a time, set with --fault or POST /_sim/fault,
 * optionally limited to a number of matching requests ("count"), to the
 * inference routes or all routes ("scope"), and to one model. "refuse" acts
 * on connections (MHD's accept policy), every other mode on requests.
 * Below the routes: control.c shows and sets the fault through these.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const FAULT_NAMES[] = {"none",  "refuse", "500", "503",  "429",  "hang",
                                   "stall", "close",  "404", "slow", "reset"};

/* ---- faults ---- */

int fault_parse_mode(const char *s, struct sim_fault *f, char *err, size_t errlen)
{
    char name[32];
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n >= sizeof name) {
        snprintf(err, errlen, "unknown fault mode '%s'", s);
        return -1;
    }
    memcpy(name, s, n);
    name[n] = 0;
    int mode = -1;
    for (int i = 0; i < (int)(sizeof FAULT_NAMES / sizeof FAULT_NAMES[0]); i++)
        if (strcmp(name, FAULT_NAMES[i]) == 0)
            mode = i;
    if (mode < 0) {
        snprintf(err, errlen,
                 "unknown fault mode '%s' (none, refuse, 500, 503, 429, hang, stall:N, "
                 "close:N, reset:N, 404, slow:MS)",
                 name);
        return -1;
    }
    f->mode = (enum fault_mode)mode;
    f->arg = 0;
    if (colon) {
        char *end;
        long long v = strtoll(colon + 1, &end, 10);
        if (end == colon + 1 || *end || v < 0) {
            snprintf(err, errlen, "bad fault argument '%s'", colon + 1);
            return -1;
        }
        f->arg = v;
    }
    return 0;
}

void fault_clear(void)
{
    memset(&g_sim.fault, 0, sizeof g_sim.fault);
    g_sim.fault.count = -1;
}

int fault_refuse_connection(void)
{
    struct sim_fault *f = &g_sim.fault;
    if (f->mode != F_REFUSE)
        return 0;
    if (f->until_ns && now_ns() >= f->until_ns) {
        fault_clear();
        return 0;
    }
    stats_fault_injected();
    if (f->count > 0 && --f->count == 0)
        fault_clear();
    return 1;
}

enum fault_mode fault_take(struct sim_req *r, int64_t *arg)
{
    struct sim_fault *f = &g_sim.fault;
    if (f->mode == F_NONE || f->mode == F_REFUSE)
        return F_NONE;
    if (!f->scope_all && !route_is_inference(r->route))
        return F_NONE;
    if (f->model_key[0]) {
        struct mname n;
        char key[SIM_NAME_MAX * 4 + 8];
        if (!r->model_name[0] || !mname_parse(r->model_name, &n))
            return F_NONE;
        mname_key(&n, key, sizeof key);
        if (strcmp(key, f->model_key) != 0)
            return F_NONE;
    }
    enum fault_mode mode = f->mode;
    *arg = f->arg;
    if (f->count > 0 && --f->count == 0)
        fault_clear();
    stats_fault_injected();
    return mode;
}

void fault_json(struct sbuf *b)
{
    const struct sim_fault *f = &g_sim.fault;
    sb_puts(b, "{\"mode\":");
    sb_json_str(b, FAULT_NAMES[f->mode]);
    sb_puts(b, ",\"arg\":");
    sb_i64(b, f->arg);
    sb_puts(b, ",\"count\":");
    if (f->count < 0)
        sb_puts(b, "null");
    else
        sb_i64(b, f->count);
    sb_puts(b, ",\"scope\":");
    sb_json_str(b, f->scope_all ? "all" : "inference");
    sb_puts(b, ",\"model\":");
    if (f->model_key[0])
        sb_json_str(b, f->model_key);
    else
        sb_puts(b, "null");
    sb_putc(b, '}');
}
