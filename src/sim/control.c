/*
 * control.c - the /_sim/ control routes: statistics (stats.c), the fault
 * (fault.c) and the model table (models.c), shown and changed over HTTP.
 * Control requests are never recorded, never faulted, never host-checked.
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sollol/log.h"

/* ---- /_sim/ routes ---- */

static void control_ok(struct sim_req *r)
{
    r->h.status = 200;
    r->h.ctype = "application/json";
    req_ready(r);
}

static void control_err(struct sim_req *r, int status, const char *msg)
{
    r->h.out.len = 0;
    sb_puts(&r->h.out, "{\"error\":");
    sb_json_str(&r->h.out, msg);
    sb_putc(&r->h.out, '}');
    r->h.status = status;
    r->h.ctype = "application/json";
    req_ready(r);
}

static uint64_t query_u64(struct sim_req *r, const char *key)
{
    const char *v = MHD_lookup_connection_value(r->h.conn, MHD_GET_ARGUMENT_KIND, key);
    return v ? strtoull(v, NULL, 10) : 0;
}

static void models_json(struct sbuf *b)
{
    sb_puts(b, "{\"models\":[");
    int first = 1;
    uint64_t now = now_ns();
    for (struct sim_model *m = model_first(); m; m = m->next) {
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_puts(b, "{\"name\":");
        sb_json_str(b, m->display);
        sb_printf(b, ",\"installed\":%s,\"state\":", m->installed ? "true" : "false");
        sb_json_str(b, model_state_name(m));
        sb_printf(b,
                  ",\"active\":%d,\"queued\":%d,\"slots\":%d,\"max_active\":%d,\"expires_in_ms\":",
                  m->active, m->queue.n, m->nslots, m->max_active);
        if (m->state == M_LOADED && m->expires_ns > now)
            sb_printf(b, "%.3f", (double)(m->expires_ns - now) / 1e6);
        else
            sb_puts(b, "null");
        sb_putc(b, '}');
    }
    sb_puts(b, "]}");
}

/* The body of a control POST as a JSON object; else answers 400 and
 * returns NULL. */
static cJSON *control_object(struct sim_req *r)
{
    cJSON *j = cJSON_ParseWithLength(r->h.body.p ? r->h.body.p : "", r->h.body.len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        control_err(r, 400, "expected a JSON object");
        return NULL;
    }
    return j;
}

static void handle_fault(struct sim_req *r)
{
    if (r->h.method == SIMHTTP_GET) {
        r->h.out.len = 0;
        fault_json(&r->h.out);
        control_ok(r);
        return;
    }
    cJSON *j = control_object(r);
    if (!j)
        return;
    struct sim_fault f;
    memset(&f, 0, sizeof f);
    f.count = -1;
    char err[256];
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    const char *ms = cJSON_IsString(mode) ? mode->valuestring : NULL;
    char num[32];
    if (cJSON_IsNumber(mode)) {
        snprintf(num, sizeof num, "%d", mode->valueint);
        ms = num;
    }
    if (!ms || fault_parse_mode(ms, &f, err, sizeof err) < 0) {
        cJSON_Delete(j);
        control_err(r, 400, ms ? err : "mode is required");
        return;
    }
    const cJSON *arg = cJSON_GetObjectItemCaseSensitive(j, "arg");
    if (cJSON_IsNumber(arg))
        f.arg = (int64_t)arg->valuedouble;
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(j, "count");
    if (cJSON_IsNumber(count) && count->valuedouble >= 1)
        f.count = (int64_t)count->valuedouble;
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(j, "scope");
    if (cJSON_IsString(scope)) {
        if (strcmp(scope->valuestring, "all") == 0)
            f.scope_all = 1;
        else if (strcmp(scope->valuestring, "inference") != 0) {
            cJSON_Delete(j);
            control_err(r, 400, "scope must be \"inference\" or \"all\"");
            return;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (cJSON_IsString(model) && model->valuestring[0]) {
        struct mname n;
        if (!mname_parse(model->valuestring, &n)) {
            cJSON_Delete(j);
            control_err(r, 400, "invalid model name");
            return;
        }
        mname_key(&n, f.model_key, sizeof f.model_key);
    }
    cJSON_Delete(j);
    if (f.mode == F_REFUSE) {
        /* Decided at accept time, before any request is read. */
        f.scope_all = 1;
        f.model_key[0] = 0;
        if (f.arg > 0)
            f.until_ns = now_ns() + (uint64_t)f.arg * 1000000ULL;
    }
    if (f.mode == F_NONE)
        fault_clear();
    else
        g_sim.fault = f;
    SOL_INFO("fault set: %s arg=%lld count=%lld scope=%s", FAULT_NAMES[f.mode], (long long)f.arg,
             (long long)f.count, f.scope_all ? "all" : "inference");
    r->h.out.len = 0;
    fault_json(&r->h.out);
    control_ok(r);
}

static void handle_models(struct sim_req *r)
{
    if (r->h.method == SIMHTTP_GET) {
        r->h.out.len = 0;
        models_json(&r->h.out);
        control_ok(r);
        return;
    }
    cJSON *j = control_object(r);
    if (!j)
        return;
    static const char *const actions[] = {"load", "unload", "install", "remove"};
    const cJSON *v = NULL;
    int act = -1;
    for (int i = 0; i < 4 && act < 0; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, actions[i]);
        if (v)
            act = i;
    }
    if (act < 0 || !cJSON_IsString(v)) {
        cJSON_Delete(j);
        control_err(r, 400, "expected {\"load\"|\"unload\"|\"install\"|\"remove\": string}");
        return;
    }
    char err[256] = "";
    int status = 200;
    if (act == 2) {
        if (!model_install_spec(v->valuestring, 0, err, sizeof err))
            status = 400;
    } else {
        struct sim_model *m = model_find(v->valuestring);
        if (!m) {
            snprintf(err, sizeof err, "model '%s' not found", v->valuestring);
            status = 404;
        } else if (act == 0) {
            model_load_now(m);
        } else if (act == 1) {
            model_request_unload(m);
        } else {
            model_remove(m);
        }
    }
    cJSON_Delete(j);
    if (status != 200) {
        control_err(r, status, err);
        return;
    }
    r->h.out.len = 0;
    models_json(&r->h.out);
    control_ok(r);
}

void control_handle(struct sim_req *r)
{
    r->h.out.len = 0;
    switch (r->route) {
    case R_SIM_STATS: {
        struct sbuf f = {0};
        fault_json(&f);
        stats_json(&r->h.out, query_u64(r, "since"), &f);
        sb_free(&f);
        control_ok(r);
        break;
    }
    case R_SIM_RESET:
        stats_reset();
        sb_puts(&r->h.out, "{\"status\":\"ok\"}");
        control_ok(r);
        break;
    case R_SIM_FAULT:
        handle_fault(r);
        break;
    case R_SIM_MODELS:
        handle_models(r);
        break;
    default:
        control_err(r, 404, "unknown control route");
        break;
    }
}
