/*
 * coordinator.c - llama-server over rpc-server backends: pre-flight,
 * launch, supervision, idle unload, local rpc-servers (see coordinator.h;
 * what requests see is in coordinator_serve.c).
 *
 * Everything runs on the loop. Blocking work (reading the Ollama store and
 * the GGUF header) runs in a uv_work item. Children are started through
 * sollol-exec (PR_SET_PDEATHSIG, then exec) in their own session, reaped
 * only by libuv's exit callback, and stopped with SIGTERM then SIGKILL.
 */
#include "nodes/coordinator.h"

#include "nodes/coordinator_priv.h"

#include "base/breaker.h"
#include "nodes/child.h"
#include "sollol/container_of.h"
#include "daemon-t.h"
#include "base/gguf.h"
#include "nodes/health.h"
#include "sollol/log.h"
#include "base/model_name.h"
#include "base/model_store.h"
#include "nodes/rpc_probe.h"
#include "base/translate.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Messages here combine several bounded parts (names, versions, log lines)
 * into fixed buffers; cutting a long one short is the intended behaviour. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

const char *coord_state_name(enum cstate s)
{
    static const char *const names[] = {"stopped", "starting", "ready", "restarting", "failed"};
    return names[s];
}

static uint64_t now_ms(const struct sol_coord *c)
{
    return c->ops.now_ms(c->ops.clock_ud);
}

uint64_t coord_now_ms(const struct sol_coord *c)
{
    return now_ms(c);
}

/* ---- log ring ------------------------------------------------------------ */

static void ring_add(struct sol_coord *c, const char *line, size_t n)
{
    if (n > LOG_LINE_MAX)
        n = LOG_LINE_MAX;
    char *copy = malloc(n + 1);
    if (!copy)
        return;
    memcpy(copy, line, n);
    copy[n] = '\0';
    unsigned slot = (c->log_head + c->log_count) % LOG_LINES;
    if (c->log_count == LOG_LINES) {
        free(c->log_ring[c->log_head]);
        c->log_head = (c->log_head + 1) % LOG_LINES;
        slot = (c->log_head + LOG_LINES - 1) % LOG_LINES;
    } else {
        c->log_count++;
    }
    c->log_ring[slot] = copy;
}

/* The last `k` lines joined with " | ", for error messages. */
static void ring_tail(const struct sol_coord *c, unsigned k, char *out, size_t outlen)
{
    size_t off = 0;
    out[0] = '\0';
    unsigned start = c->log_count > k ? c->log_count - k : 0;
    for (unsigned i = start; i < c->log_count && off + 1 < outlen; i++) {
        const char *l = c->log_ring[(c->log_head + i) % LOG_LINES];
        int w = snprintf(out + off, outlen - off, "%s%s", off ? " | " : "", l);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* The last line of llama-server's output that names a cause (see
 * sol_child_cause_line), among its last 30 lines; "" when none does. */
static void ring_cause(const struct sol_coord *c, char *out, size_t outlen)
{
    const char *lines[30];
    unsigned n = 0;
    unsigned start = c->log_count > 30 ? c->log_count - 30 : 0;
    for (unsigned i = start; i < c->log_count; i++)
        lines[n++] = c->log_ring[(c->log_head + i) % LOG_LINES];
    const char *l = sol_child_cause_line(lines, n);
    snprintf(out, outlen, "%s", l ? l : "");
}

/* ---- children (child.c) --------------------------------------------------- */

static void maybe_stopped(struct sol_coord *c);
static void local_start(struct local_rpc *l);

static void child_closed(void *owner)
{
    struct sol_coord *c = owner;
    c->children_open--;
    maybe_stopped(c);
}

static void ring_line(void *owner, const char *line, size_t len)
{
    struct sol_coord *c = owner;
    ring_add(c, line, len);
    /* llama-server's output is read after its exit is reported, often: a
     * cause line that comes later (the ggml-rpc.cpp line follows ggml's
     * "E recv failed") replaces the one quoted at the exit. */
    if (c->cause_pending && c->log_count) {
        const char *l = c->log_ring[(c->log_head + c->log_count - 1) % LOG_LINES];
        char cause[SOL_CHILD_LINE_MAX + 1];
        if (sol_child_cause_line(&l, 1)) {
            ring_cause(c, cause, sizeof cause);
            snprintf(c->last_exit, sizeof c->last_exit, "%s: %s", c->last_exit_head, cause);
        }
    }
}

/* Every child is counted from here to its on_closed, so shutdown waits for
 * each to be reaped. keep_log: its lines go to the status's log ring. */
static struct sol_child *spawn(struct sol_coord *c, const char *label, char **argv, int keep_log,
                               void (*on_exit)(struct sol_child *), void *ud, char *err,
                               size_t errlen)
{
    struct sol_child_opts o = {
        .loop = c->d->loop,
        .exec_path = c->exec_path,
        .label = label,
        .argv = argv,
        .grace_ms = c->cfg->llama_stop_grace_ms,
        .on_line = keep_log ? ring_line : NULL,
        .on_exit = on_exit,
        .on_closed = child_closed,
        .owner = c,
        .ud = ud,
        .env = c->env,
    };
    c->children_open++;
    /* spawn copies what it keeps of o (child.h); cppcheck cannot see
     * through the function pointer. */
    /* cppcheck-suppress returnDanglingLifetime */
    return c->ops.spawn(&o, err, errlen);
}

static int pick_port(const struct sol_coord *c, const struct sol_config *cfg, int *out)
{
    return c->ops.free_port(cfg->llama_port_min, cfg->llama_port_max, out);
}

/* The RPC server program: the configured one, else the one beside
 * llama-server (or on PATH when llama-server is a bare name) under its
 * current name ggml-rpc-server (llama.cpp since 2026-06), then the older
 * rpc-server. Found once, at creation; how goes to c->rpc_bin_how. */
static void find_rpc_server(struct sol_coord *c, char *out, size_t outlen)
{
    static const char *const names[] = {"ggml-rpc-server", "rpc-server"};
    const struct sol_config *cfg = c->cfg;
    if (cfg->rpc_server_binary && cfg->rpc_server_binary[0]) {
        snprintf(out, outlen, "%s", cfg->rpc_server_binary);
        snprintf(c->rpc_bin_how, sizeof c->rpc_bin_how, "llama_server.rpc_server_binary");
        return;
    }
    const char *slash = strrchr(cfg->llama_binary, '/');
    char dirs[4096];
    if (slash)
        snprintf(dirs, sizeof dirs, "%.*s", (int)(slash - cfg->llama_binary), cfg->llama_binary);
    else
        snprintf(dirs, sizeof dirs, "%s", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char *save = NULL;
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", dirs);
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            snprintf(out, outlen, "%s/%s", dir, names[k]);
            if (access(out, X_OK) == 0) {
                snprintf(c->rpc_bin_how, sizeof c->rpc_bin_how, "%s %s", names[k],
                         slash ? "beside llama-server" : "on PATH");
                return;
            }
        }
    }
    /* Neither exists: name the current one, so the error says what to install. */
    if (slash)
        snprintf(out, outlen, "%s/%s", dirs, names[0]);
    else
        snprintf(out, outlen, "%s", names[0]);
    snprintf(c->rpc_bin_how, sizeof c->rpc_bin_how,
             "not found: neither ggml-rpc-server nor rpc-server %s",
             slash ? "beside llama-server" : "on PATH");
}

/* ---- what the installed programs accept ----------------------------------- */

static void help_line(struct help *h, const char *line, size_t len)
{
    if (h->out.len < (256u << 10)) {
        sol_buf_append(&h->out, line, len);
        sol_buf_append(&h->out, "\n", 1);
    }
}

static void help_line_rpc(void *owner, const char *line, size_t len)
{
    help_line(&((struct sol_coord *)owner)->help_rpc, line, len);
}

static void help_line_llama(void *owner, const char *line, size_t len)
{
    help_line(&((struct sol_coord *)owner)->help_llama, line, len);
}

static void help_exit(struct sol_child *ch)
{
    struct help *h = ch->ud;
    h->ch = NULL;
    /* Both programs print their usage and exit 0; a program that cannot
     * run at all says so in its output too. */
    const char *text = sol_buf_cstr(&h->out);
    int has_usage = text && (strstr(text, "--port") || strstr(text, "-p,"));
    h->state = has_usage ? 2 : 3;
    if (!has_usage) {
        char tail[300], cause[200];
        sol_child_tail(ch, 3, tail, sizeof tail, cause, sizeof cause);
        SOL_WARN("coordinator: cannot learn the flags of %s (--help: %s%s%s): passing them all",
                 h->path, ch->term_signal ? "killed" : "no usage text", tail[0] ? ": " : "",
                 cause[0] ? cause : tail);
    }
}

/* Flag `flag` appears as an option in the program's --help (after a
 * space or comma, followed by a space, comma, '=' or the line's end).
 * Unknown (not learned) counts as supported. */
static int help_has(const struct help *h, const char *flag)
{
    if (h->state != 2)
        return 1;
    const char *text = h->out.data;
    size_t n = strlen(flag);
    for (const char *p = text; (p = strstr(p, flag)) != NULL; p += n) {
        char before = p == text ? ' ' : p[-1];
        char after = p[n];
        if ((before == ' ' || before == ',' || before == '\t' || before == '\n') &&
            (after == ' ' || after == ',' || after == '=' || after == '\n' || after == '\t' ||
             after == '\0'))
            return 1;
    }
    return 0;
}

static void help_start(struct sol_coord *c, struct help *h,
                       void (*on_line)(void *, const char *, size_t))
{
    char *argv[] = {h->path, "--help", NULL};
    char err[400];
    struct sol_child_opts o = {
        .loop = c->d->loop,
        .exec_path = c->exec_path,
        .label = "--help",
        .argv = argv,
        .grace_ms = 2000,
        .on_line = on_line,
        .on_exit = help_exit,
        .on_closed = child_closed,
        .owner = c,
        .ud = h,
        .env = c->env,
        .quiet = 1,
    };
    h->state = 1;
    c->children_open++;
    h->ch = c->ops.spawn(&o, err, sizeof err);
    if (!h->ch) {
        h->state = 3;
        SOL_WARN("coordinator: %s", err);
    }
}

static int helps_done(const struct sol_coord *c)
{
    return c->help_rpc.state >= 2 && c->help_llama.state >= 2;
}

/* ---- the virtual node ---------------------------------------------------- */

unsigned coord_queued(struct sol_coord *c)
{
    return c->hooks.queued(c->hooks.ud);
}

/* Ends every request waiting for the sharded model with `status`. */
static void fail_waiting(struct sol_coord *c, unsigned status, const char *msg)
{
    c->hooks.fail_waiting(c->hooks.ud, status, msg);
}

static void on_kick(uv_timer_t *t)
{
    struct sol_coord *c = t->data;
    if (!c->stopping)
        c->hooks.kick(c->hooks.ud);
}

static void set_model_entry(struct sol_coord *c, const char *canonical, int loaded)
{
    struct sol_node_model *m = sol_node_model_get(c->node, canonical);
    if (!m)
        return;
    m->installed = 1;
    m->gone = 0;
    m->loaded = (unsigned)loaded;
    char ts[48];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sol_translate_rfc3339((uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec, ts,
                          sizeof ts);
    int same = strcmp(canonical, c->model) == 0 && c->resolved_for[0] &&
               strcmp(c->resolved_for, canonical) == 0;
    struct sol_buf b = {0};
    sol_buf_append_str(&b, "{\"name\":");
    sol_buf_append_json_string(&b, canonical, strlen(canonical));
    sol_buf_append_str(&b, ",\"model\":");
    sol_buf_append_json_string(&b, canonical, strlen(canonical));
    sol_buf_appendf(&b, ",\"modified_at\":\"%s\",\"size\":%llu,\"digest\":\"%s\",", ts,
                    same ? (unsigned long long)c->info.file_size : 0ull, same ? c->digest : "");
    sol_buf_append_str(&b, "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":");
    const char *fam = same ? c->info.architecture : "";
    sol_buf_append_json_string(&b, fam, strlen(fam));
    sol_buf_append_str(&b, ",\"families\":[");
    if (*fam)
        sol_buf_append_json_string(&b, fam, strlen(fam));
    sol_buf_appendf(&b, "],\"parameter_size\":\"\",\"quantization_level\":\"%s\"}}",
                    same ? sol_gguf_file_type_name(c->info.file_type) : "");
    const char *tags = sol_buf_cstr(&b);
    free(m->tags_entry);
    m->tags_entry = tags ? strdup(tags) : NULL;
    free(m->ps_entry);
    m->ps_entry = NULL;
    if (loaded && tags) {
        /* /api/ps: the same, with expiry (idle unload) and the context. */
        b.len--; /* drop the closing brace */
        uint64_t idle = c->cfg->llama_idle_unload_ms;
        char exp[48] = "0001-01-01T00:00:00Z";
        if (idle)
            sol_translate_rfc3339(((uint64_t)now.tv_sec * 1000ull + idle) * 1000000ull, exp,
                                  sizeof exp);
        sol_buf_appendf(&b, ",\"expires_at\":\"%s\",\"size_vram\":%llu,\"context_length\":%d}", exp,
                        (unsigned long long)c->info.file_size, c->cfg->llama_ctx_size);
        const char *ps = sol_buf_cstr(&b);
        m->ps_entry = ps ? strdup(ps) : NULL;
    }
    m->size = same ? c->info.file_size : 0;
    snprintf(m->digest, sizeof m->digest, "%s", same ? c->digest : "");
    sol_buf_free(&b);
}

/* The node follows the coordinator: routable unless failed; slots open
 * only when ready. */
static void sync_node(struct sol_coord *c)
{
    struct sol_node *n = c->node;
    n->state = c->state == CS_FAILED ? SOL_NODE_DOWN : SOL_NODE_UP;
    n->held = c->state != CS_READY || c->suspect;
    snprintf(n->last_error, sizeof n->last_error, "%.*s", (int)sizeof n->last_error - 1,
             c->state == CS_FAILED ? c->reason : "");
    for (unsigned i = 0; i < n->n_models; i++) {
        struct sol_node_model *m = &n->models[i];
        int current = strcmp(m->name, c->model) == 0;
        if (current) {
            set_model_entry(c, m->name, c->state == CS_READY);
        } else {
            /* Only the model the backends serve is listed and routable;
             * sol_coord_take() makes a requested one routable again. */
            m->installed = m->loaded = 0;
            free(m->tags_entry);
            free(m->ps_entry);
            m->tags_entry = m->ps_entry = NULL;
        }
    }
    if (c->state == CS_READY && !c->stopping && !uv_is_active((uv_handle_t *)&c->kick))
        uv_timer_start(&c->kick, on_kick, 0, 0);
}

void coord_set_state(struct sol_coord *c, enum cstate s, enum step st)
{
    if (c->state != s)
        SOL_INFO("coordinator: %s -> %s (model %s)", coord_state_name(c->state),
                 coord_state_name(s), c->model[0] ? c->model : "-");
    c->state = s;
    c->step = st;
    sync_node(c);
}

/* ---- pipeline ------------------------------------------------------------ */

static void start_resolve(struct sol_coord *c);
static void start_reference(struct sol_coord *c);
static void start_probes(struct sol_coord *c);
static void launch(struct sol_coord *c);

/* The pre-flight failed: no llama-server is started; requests get 503
 * (or 404) with the reason until a later request retries. */
static void preflight_fail(struct sol_coord *c, unsigned status, const char *msg)
{
    if (c->survey) {
        /* The start-up survey only reports: the first request tries again.
         * Without a reference version the backends are still probed (their
         * rows then say up or down, not which version is wrong). */
        SOL_ERROR("coordinator: %s", msg);
        if (c->step == ST_REFERENCE) {
            start_probes(c);
            return;
        }
        c->survey = 0;
        c->step = ST_IDLE;
        if (c->state == CS_STOPPED && coord_queued(c))
            coord_begin(c, CS_STARTING);
        return;
    }
    SOL_ERROR("coordinator: model %s cannot be served: %s", c->model, msg);
    snprintf(c->reason, sizeof c->reason, "%s", msg);
    c->failed_preflight = 1;
    c->fail_status = status;
    c->failed_at = now_ms(c);
    coord_set_state(c, CS_FAILED, ST_IDLE);
    fail_waiting(c, status, msg);
}

void coord_begin(struct sol_coord *c, enum cstate s)
{
    c->failed_preflight = 0;
    c->reason[0] = '\0';
    c->survey = 0;
    coord_set_state(c, s, ST_IDLE);
    if (!helps_done(c)) {
        c->step = ST_LEARNING; /* the tick goes on once both --help runs ended */
        return;
    }
    if (strcmp(c->resolved_for, c->model) != 0)
        start_resolve(c);
    else if (!c->have_ref)
        start_reference(c);
    else
        start_probes(c);
}

static void resolve_work(uv_work_t *req)
{
    struct resolve_work *w = req->data;
    struct sol_model_files files;
    const char *path = w->explicit_path;
    if (!path[0]) {
        if (!w->have_root) {
            snprintf(w->err, sizeof w->err,
                     "model '%s': no Ollama store (set OLLAMA_MODELS or HOME) and no path in "
                     "model_paths",
                     w->model);
            w->rc = -1;
            w->not_found = 1;
            return;
        }
        if (sol_model_store_resolve(w->root, w->model, &files, w->err, sizeof w->err) < 0) {
            w->rc = -1;
            w->not_found = strstr(w->err, "not found") != NULL;
            return;
        }
        path = files.model;
        snprintf(w->digest, sizeof w->digest, "%s", files.digest);
        snprintf(w->projector, sizeof w->projector, "%s", files.projector);
        snprintf(w->adapter, sizeof w->adapter, "%s", files.adapter);
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->rc = sol_gguf_read_file(w->path, &w->info, w->err, sizeof w->err);
}

static void resolve_done(uv_work_t *req, int status)
{
    struct resolve_work *w = req->data;
    struct sol_coord *c = w->c;
    c->work = NULL;
    if (status == UV_ECANCELED || c->stopping || strcmp(w->model, c->model) != 0) {
        free(w);
        maybe_stopped(c);
        if (!c->stopping && c->state == CS_STARTING)
            coord_begin(c, CS_STARTING); /* the model changed meanwhile */
        return;
    }
    if (w->rc < 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s", w->err);
        unsigned st = w->not_found ? 404 : 503;
        free(w);
        preflight_fail(c, st, msg);
        return;
    }
    snprintf(c->resolved_for, sizeof c->resolved_for, "%s", c->model);
    snprintf(c->gguf_path, sizeof c->gguf_path, "%s", w->path);
    snprintf(c->digest, sizeof c->digest, "%s", w->digest);
    snprintf(c->projector, sizeof c->projector, "%s", w->projector);
    snprintf(c->adapter, sizeof c->adapter, "%s", w->adapter);
    c->info = w->info;
    free(w);
    SOL_INFO("coordinator: model %s is %s: GGUF v%u, %s, %llu blocks, %s, %llu MiB", c->model,
             c->gguf_path, c->info.version, c->info.architecture,
             (unsigned long long)c->info.block_count, sol_gguf_file_type_name(c->info.file_type),
             (unsigned long long)(c->info.file_size >> 20));
    if (c->have_ref)
        start_probes(c);
    else
        start_reference(c);
}

/* The explicit path configured for a model, if any. */
int coord_explicit_path(const struct sol_coord *c, const char *canonical, char *out, size_t len)
{
    cJSON *paths = cJSON_Parse(c->cfg->model_paths ? c->cfg->model_paths : "{}");
    const cJSON *obj = cJSON_IsObject(paths) ? paths : NULL;
    const cJSON *it;
    int found = 0;
    cJSON_ArrayForEach(it, obj)
    {
        char canon[SOL_MODEL_NAME_MAX];
        if (cJSON_IsString(it) && sol_model_canonical(it->string, canon, sizeof canon) == 0 &&
            strcmp(canon, canonical) == 0) {
            snprintf(out, len, "%s", it->valuestring);
            found = 1;
            break;
        }
    }
    cJSON_Delete(paths);
    return found;
}

static void start_resolve(struct sol_coord *c)
{
    struct resolve_work *w = calloc(1, sizeof *w);
    if (!w) {
        preflight_fail(c, 500, "out of memory");
        return;
    }
    w->c = c;
    w->req.data = w;
    snprintf(w->model, sizeof w->model, "%s", c->model);
    coord_explicit_path(c, c->model, w->explicit_path, sizeof w->explicit_path);
    w->have_root =
        sol_model_store_root(getenv("OLLAMA_MODELS"), getenv("HOME"), w->root, sizeof w->root) == 0;
    c->step = ST_RESOLVING;
    if (uv_queue_work(c->d->loop, &w->req, resolve_work, resolve_done) < 0) {
        free(w);
        preflight_fail(c, 500, "cannot queue the model lookup");
        return;
    }
    c->work = w;
}

/* -- the reference version: a short run of the local rpc-server -- */

static void ref_child_exit(struct sol_child *ch)
{
    struct sol_coord *c = ch->ud;
    if (c->ref_child == ch)
        c->ref_child = NULL;
    if (!ch->stop_requested) {
        char tail[300], cause[200];
        sol_child_tail(ch, 3, tail, sizeof tail, cause, sizeof cause);
        if (ch->term_signal)
            snprintf(c->ref_said, sizeof c->ref_said, "killed by signal %d: %s", ch->term_signal,
                     cause[0]  ? cause
                     : tail[0] ? tail
                               : "(no output)");
        else
            snprintf(c->ref_said, sizeof c->ref_said, "exit status %lld: %s",
                     (long long)ch->exit_status,
                     cause[0]  ? cause
                     : tail[0] ? tail
                               : "(no output)");
    }
}

static void ref_finish(struct sol_coord *c, const char *error)
{
    if (c->ref_probe) {
        c->ops.probe_cancel(c->ref_probe);
        c->ref_probe = NULL;
    }
    c->ops.stop(c->ref_child);
    if (error) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "cannot learn the reference RPC version: %s (set rpc_version to skip this)",
                 error);
        preflight_fail(c, 503, msg);
        return;
    }
    start_probes(c);
}

static void on_ref_probe(const struct sol_rpc_probe_result *res, void *ud)
{
    struct sol_coord *c = ud;
    c->ref_probe = NULL;
    if (c->stopping || c->step != ST_REFERENCE)
        return;
    if (res->answered) {
        c->ref = res->version;
        c->have_ref = 1;
        snprintf(c->ref_source, sizeof c->ref_source, "local %s",
                 strrchr(c->help_rpc.path, '/') ? strrchr(c->help_rpc.path, '/') + 1
                                                : c->help_rpc.path);
        SOL_INFO("coordinator: reference RPC protocol %u.%u.%u (from %s)", c->ref.major,
                 c->ref.minor, c->ref.patch, c->help_rpc.path);
        ref_finish(c, NULL);
        return;
    }
    c->ref_next_probe = now_ms(c) + REF_PROBE_EVERY_MS; /* not listening yet */
}

static void start_reference(struct sol_coord *c)
{
    if (c->cfg->rpc_version && c->cfg->rpc_version[0]) {
        if (sol_rpc_version_parse(c->cfg->rpc_version, &c->ref) < 0) {
            preflight_fail(c, 503, "rpc_version is not MAJ.MIN[.PATCH]");
            return;
        }
        c->have_ref = 1;
        snprintf(c->ref_source, sizeof c->ref_source, "config rpc_version");
        start_probes(c);
        return;
    }
    char port[16], err[400];
    char *prog = c->help_rpc.path;
    if (pick_port(c, &(struct sol_config){0}, &c->ref_port) < 0) {
        preflight_fail(c, 503, "no free loopback port for the reference rpc-server");
        return;
    }
    snprintf(port, sizeof port, "%d", c->ref_port);
    char *argv[] = {prog, "-H", "127.0.0.1", "-p", port, NULL};
    c->step = ST_REFERENCE;
    c->ref_child = spawn(c, "rpc-server ref", argv, 0, ref_child_exit, c, err, sizeof err);
    if (!c->ref_child) {
        ref_finish(c, err);
        return;
    }
    c->ref_deadline = now_ms(c) + REF_TIMEOUT_MS;
    c->ref_next_probe = now_ms(c) + 50;
}

static void ref_tick(struct sol_coord *c, uint64_t now)
{
    if (c->ref_probe)
        return;
    if (!c->ref_child) {
        char msg[500];
        snprintf(msg, sizeof msg, "the local rpc server %s exited before answering (%s)",
                 c->help_rpc.path, c->ref_said);
        ref_finish(c, msg);
        return;
    }
    if (now >= c->ref_deadline) {
        ref_finish(c, "the local rpc-server did not answer HELLO in time");
        return;
    }
    if (now >= c->ref_next_probe) {
        c->ref_next_probe = UINT64_MAX;
        c->ref_probe = c->ops.probe_start(c->d->loop, "127.0.0.1", c->ref_port,
                                          c->cfg->rpc_probe_timeout_ms, 0, on_ref_probe, c);
    }
}

/* -- backend probes -- */

static void evaluate(struct sol_coord *c);

/* A backend's health row follows a full probe: up once it answers HELLO,
 * down (since when, why) when it does not. Transitions are logged once. */
static void note_health(struct sol_coord *c, struct backend *b,
                        const struct sol_rpc_probe_result *res)
{
    int up = res->answered;
    if (res->peer[0])
        snprintf(b->peer, sizeof b->peer, "%s", res->peer);
    if (up) {
        if (b->down_since)
            SOL_INFO("rpc backend %s:%d is up again (down %llu ms)", b->addr.host, b->addr.port,
                     (unsigned long long)(now_ms(c) - b->down_since));
        b->down_since = 0;
        b->lost = 0;
        b->reachable = 1;
        return;
    }
    b->reachable = 0;
    if (!b->down_since) {
        b->down_since = now_ms(c);
        if (!b->lost)
            snprintf(b->last_error, sizeof b->last_error, "%s",
                     res->error[0] ? res->error : "no HELLO answer");
        SOL_WARN("rpc backend %s:%d is down: %s", b->addr.host, b->addr.port, b->last_error);
    } else if (!b->lost) {
        snprintf(b->last_error, sizeof b->last_error, "%s",
                 res->error[0] ? res->error : "no HELLO answer");
    }
}

/* Whether the backend is excluded against the reference, and why. */
static int check_compatible(struct sol_coord *c, struct backend *b)
{
    const struct sol_rpc_probe_result *r = &b->last;
    char why[240] = "";
    if (!r->answered)
        snprintf(why, sizeof why, "no HELLO answer: %s", r->error);
    else if (c->have_ref && !sol_rpc_version_compatible(&c->ref, &r->version, why, sizeof why))
        ; /* why is set */
    else if (!r->complete)
        snprintf(why, sizeof why, "device query failed: %s", r->error);
    snprintf(b->why, sizeof b->why, "%s", why);
    return why[0] != '\0';
}

static void on_probe(const struct sol_rpc_probe_result *res, void *ud)
{
    struct probe_ud *pu = ud;
    struct sol_coord *c = pu->c;
    struct backend *b = &c->backends[pu->index];
    b->probe = NULL;
    b->reachable = res->connected;
    if (pu->connect_only == 2) {
        /* The periodic check of a backend no llama-server holds. */
        if (res->answered || !b->probed)
            b->last = *res;
        b->probed = 1;
        note_health(c, b, res);
        if (res->answered) {
            int was = b->excluded;
            b->excluded = check_compatible(c, b);
            if (b->excluded && !was)
                SOL_WARN("rpc backend %s:%d excluded: %s (reference %u.%u.%u from %s)",
                         b->addr.host, b->addr.port, b->why, c->ref.major, c->ref.minor,
                         c->ref.patch, c->ref_source);
        }
        return;
    }
    if (pu->connect_only) {
        if (!res->connected)
            SOL_WARN("rpc backend %s:%d is unreachable: %s", b->addr.host, b->addr.port,
                     res->error);
        return;
    }
    b->last = *res;
    b->probed = 1;
    note_health(c, b, res);
    if (c->probes_pending && --c->probes_pending == 0 && c->step == ST_PROBING)
        evaluate(c);
}

static void start_probes(struct sol_coord *c)
{
    c->step = ST_PROBING;
    c->probes_pending = 0;
    for (unsigned i = 0; i < c->n_backends; i++) {
        struct backend *b = &c->backends[i];
        if (b->probe) {
            c->ops.probe_cancel(b->probe);
            b->probe = NULL;
        }
        struct probe_ud *pu = &c->uds[i];
        pu->c = c;
        pu->index = i;
        pu->connect_only = 0;
        b->probe = c->ops.probe_start(c->d->loop, b->addr.host, b->addr.port,
                                      c->cfg->rpc_probe_timeout_ms, 0, on_probe, pu);
        if (b->probe)
            c->probes_pending++;
    }
    if (c->probes_pending == 0)
        evaluate(c);
}

/* A backend llama-server holds: never probed (see backend_checks). */
static int held_by_llama(const struct sol_coord *c, const struct backend *b)
{
    return b->required && c->llama != NULL;
}

/* Start-up: learn the reference version and probe every backend, so that
 * GET /api/sollol/rpc shows a wrong version or a dead backend before the
 * first request. Launches nothing (evaluate() ends a survey). */
static void start_survey(struct sol_coord *c)
{
    c->step = ST_IDLE;
    if (c->n_backends == 0)
        return;
    c->survey = 1;
    if (c->have_ref)
        start_probes(c);
    else
        start_reference(c); /* the config's rpc_version, or a short local run */
}

static void conn_work_fn(uv_work_t *req);
static void conn_work_done(uv_work_t *req, int status);

/* Periodic: a full probe (HELLO, devices, memory) of each backend no
 * llama-server holds, and, while llama-server runs, a look at its
 * connections to the backends it holds (an rpc server that died closed
 * its end of the connection). */
static void backend_checks(struct sol_coord *c, uint64_t now)
{
    (void)now;
    if (c->step != ST_IDLE || c->survey)
        return; /* the pipeline probes them itself */
    for (unsigned i = 0; i < c->n_backends; i++) {
        struct backend *b = &c->backends[i];
        if (b->probe || held_by_llama(c, b))
            continue;
        struct probe_ud *pu = &c->uds[MAX_BACKENDS + i];
        pu->c = c;
        pu->index = i;
        pu->connect_only = 2;
        b->probe = c->ops.probe_start(c->d->loop, b->addr.host, b->addr.port,
                                      c->cfg->rpc_probe_timeout_ms, 0, on_probe, pu);
    }
    if (!c->llama || c->state != CS_READY || c->conn)
        return;
    struct conn_work *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->c = c;
    w->req.data = w;
    w->pid = c->llama->pid;
    for (unsigned i = 0; i < c->n_backends && w->n < MAX_BACKENDS; i++) {
        const struct backend *b = &c->backends[i];
        snprintf(w->peer[i], sizeof w->peer[i], "%s", b->required ? b->peer : "");
        w->port[i] = b->required ? b->addr.port : 0;
        w->n = i + 1;
    }
    if (uv_queue_work(c->d->loop, &w->req, conn_work_fn, conn_work_done) < 0) {
        free(w);
        return;
    }
    c->conn = w;
}

/* /proc's form of an address: the 32-bit words of the address as the
 * kernel prints them (each in host byte order, %08X). */
static int proc_addr(const char *ip, char *out, size_t outlen)
{
    unsigned char a[16];
    uint32_t w[4];
    if (inet_pton(AF_INET, ip, a) == 1) {
        memcpy(w, a, 4);
        snprintf(out, outlen, "%08X", w[0]);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, a) == 1) {
        memcpy(w, a, 16);
        snprintf(out, outlen, "%08X%08X%08X%08X", w[0], w[1], w[2], w[3]);
        return 0;
    }
    return -1;
}

/* Off the loop: llama-server's socket inodes (/proc/PID/fd), then its
 * TCP connections (/proc/PID/net/tcp, tcp6): which backends it still has
 * an established connection to. */
static void conn_work_fn(uv_work_t *req)
{
    struct conn_work *w = req->data;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", w->pid);
    DIR *dir = opendir(path);
    if (!dir) {
        w->rc = -1;
        return;
    }
    static unsigned long inodes[8192]; /* one work item at a time (c->conn) */
    size_t ni = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL && ni < sizeof inodes / sizeof inodes[0]) {
        char link[64];
        ssize_t k = readlinkat(dirfd(dir), de->d_name, link, sizeof link - 1);
        if (k <= 0)
            continue;
        link[k] = '\0';
        unsigned long ino;
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            inodes[ni++] = ino;
    }
    closedir(dir);
    char want[MAX_BACKENDS][40];
    for (unsigned i = 0; i < w->n; i++) {
        want[i][0] = '\0';
        if (!w->port[i])
            w->established[i] = 1; /* not held: not judged here */
        else if (!w->peer[i][0] || proc_addr(w->peer[i], want[i], sizeof want[i]) < 0)
            w->established[i] = 1; /* address unknown: cannot judge */
    }
    static const char *const files[] = {"tcp", "tcp6"};
    for (size_t f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "/proc/%d/net/%s", w->pid, files[f]);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        char line[512];
        while (fgets(line, sizeof line, fp)) {
            char rem[40];
            unsigned rport, st;
            unsigned long ino;
            if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%*x %39[0-9A-Fa-f]:%x %x %*s %*s %*s %*u %*u %lu",
                       rem, &rport, &st, &ino) != 4 ||
                st != 1 /* ESTABLISHED */)
                continue;
            int ours = 0;
            for (size_t k = 0; k < ni && !ours; k++)
                ours = inodes[k] == ino;
            if (!ours)
                continue;
            for (unsigned i = 0; i < w->n; i++)
                if (want[i][0] && (int)rport == w->port[i] && strcasecmp(rem, want[i]) == 0)
                    w->established[i] = 1;
        }
        fclose(fp);
    }
}

static void conn_work_done(uv_work_t *req, int status)
{
    struct conn_work *w = req->data;
    struct sol_coord *c = w->c;
    c->conn = NULL;
    int stale = status != 0 || c->stopping || !c->llama || c->llama->pid != w->pid ||
                c->state != CS_READY || w->rc < 0;
    if (!stale) {
        const struct backend *lost = NULL;
        for (unsigned i = 0; i < w->n && i < c->n_backends; i++) {
            struct backend *b = &c->backends[i];
            if (w->established[i] || !b->required)
                continue;
            b->lost = 1;
            b->reachable = 0;
            if (!b->down_since)
                b->down_since = now_ms(c);
            snprintf(b->last_error, sizeof b->last_error,
                     "llama-server's connection to it was closed (the rpc server went away)");
            SOL_WARN("rpc backend %s:%d is down: %s", b->addr.host, b->addr.port, b->last_error);
            if (!lost)
                lost = b;
        }
        if (lost && c->step == ST_IDLE) {
            /* llama-server would abort on its next use of it: stop it now
             * and recover (relaunch without it, or wait for it). Requests
             * wait in the queue meanwhile. */
            char why[300];
            snprintf(why, sizeof why, "rpc backend %s:%d it uses is gone", lost->addr.host,
                     lost->addr.port);
            c->lost_restart = 1;
            c->node->held = 1;
            snprintf(c->reason, sizeof c->reason, "%s", why);
            /* SIGKILL, not SIGTERM: its shutdown would talk to every
             * backend (freeing buffers) and abort at the dead one, and a
             * live rpc server whose client vanishes while it replies dies
             * of SIGPIPE (it does not ignore it): killed at once, it says
             * nothing, and the others only see the connection close. */
            SOL_INFO("coordinator: stopping llama-server (SIGKILL): %s", why);
            c->step = ST_STOPPING;
            c->ops.kill(c->llama);
        }
    }
    free(w);
    maybe_stopped(c);
}

/* A local rpc-server spawned moments ago may not listen yet: probe it
 * again shortly rather than exclude it. */
static int local_still_starting(const struct sol_coord *c, const struct backend *b)
{
    if (!b->local || b->last.answered)
        return 0;
    const struct local_rpc *l = &c->locals[b->local - 1];
    return l->ch && now_ms(c) - l->started_at < LOCAL_START_GRACE_MS;
}

static void evaluate(struct sol_coord *c)
{
    for (unsigned i = 0; i < c->n_backends; i++) {
        if (local_still_starting(c, &c->backends[i])) {
            snprintf(c->reason, sizeof c->reason, "waiting for local rpc-server %s:%d to start",
                     c->backends[i].addr.host, c->backends[i].addr.port);
            c->step = ST_WAIT_BACKENDS;
            c->restart_at = now_ms(c) + LOCAL_RETRY_MS;
            return;
        }
    }
    char summary[600] = "";
    size_t off = 0;
    unsigned usable = 0;
    uint64_t free_sum = 0;
    int restarting = c->state == CS_RESTARTING;
    const struct backend *missing = NULL;
    for (unsigned i = 0; i < c->n_backends; i++) {
        struct backend *b = &c->backends[i];
        const struct sol_rpc_probe_result *r = &b->last;
        int was_excluded = b->excluded;
        b->excluded = check_compatible(c, b);
        const char *why = b->why;
        if (b->excluded) {
            char full[300];
            snprintf(full, sizeof full,
                     "rpc backend %s:%d excluded: %s (reference %u.%u.%u from %s)", b->addr.host,
                     b->addr.port, why, c->ref.major, c->ref.minor, c->ref.patch, c->ref_source);
            if (!was_excluded || !restarting)
                SOL_WARN("%s", full);
            int w = snprintf(summary + off, sizeof summary - off, "%s%s:%d: %s", off ? "; " : "",
                             b->addr.host, b->addr.port, why);
            if (w > 0 && (size_t)w < sizeof summary - off)
                off += (size_t)w;
            if (b->required && !missing)
                missing = b;
            continue;
        }
        usable++;
        free_sum += r->free_sum;
    }
    if (c->survey) {
        /* Start-up: every backend's row is known before the first request. */
        SOL_INFO("coordinator: %u of %u rpc backend(s) usable, %llu MiB free%s%s", usable,
                 c->n_backends, (unsigned long long)(free_sum >> 20), off ? "; excluded: " : "",
                 summary);
        c->survey = 0;
        c->step = ST_IDLE;
        if (c->state == CS_STOPPED && coord_queued(c))
            coord_begin(c, CS_STARTING);
        return;
    }
    if (restarting && missing && usable > 0 && free_sum > 0 && c->info.file_size <= free_sum) {
        /* The backends that are left hold the model: relaunch over them
         * rather than keep every request waiting for the lost one. */
        snprintf(c->lost_why, sizeof c->lost_why,
                 "relaunched over %u backend(s) without %s:%d (%s)", usable, missing->addr.host,
                 missing->addr.port, missing->why);
        SOL_WARN("coordinator: %s", c->lost_why);
        missing = NULL;
    }
    if (restarting && missing) {
        /* llama-server needs every backend it was launched with, and the
         * others cannot hold the model: wait for it. */
        snprintf(c->reason, sizeof c->reason, "waiting for rpc backend %s:%d (%s)",
                 missing->addr.host, missing->addr.port, missing->why);
        c->step = ST_WAIT_BACKENDS;
        c->restart_at = now_ms(c) + BACKEND_RETRY_MS;
        return;
    }
    if (usable == 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "no usable rpc backend for model %s%s%s", c->model,
                 off ? ": " : " (none configured)", summary);
        preflight_fail(c, 503, msg);
        return;
    }
    if (free_sum > 0 && c->info.file_size > free_sum) {
        char msg[800];
        snprintf(msg, sizeof msg,
                 "the usable rpc backends have %llu MiB free, model %s needs %llu MiB%s%s",
                 (unsigned long long)(free_sum >> 20), c->model,
                 (unsigned long long)(c->info.file_size >> 20), off ? "; excluded: " : "", summary);
        preflight_fail(c, 503, msg);
        return;
    }
    launch(c);
}

/* -- llama-server -- */

static void on_llama_exit(struct sol_child *ch);

static void append_arg(char **argv, size_t *n, char *s)
{
    if (*n < MAX_ARGS)
        argv[(*n)++] = s;
}

static void launch(struct sol_coord *c)
{
    static char rpc_list[MAX_BACKENDS * 280], split[MAX_BACKENDS * SOL_RPC_MAX_DEVICES * 24];
    static char port[16], ctx[16], np[16];
    static char extra_store[8192];
    char *argv[MAX_ARGS + 1];
    size_t n = 0, ro = 0, so = 0;
    if (!help_has(&c->help_llama, "--rpc")) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "%s has no --rpc option: build llama.cpp with -DGGML_RPC=ON (its --help lists "
                 "no --rpc)",
                 c->cfg->llama_binary);
        preflight_fail(c, 503, msg);
        return;
    }
    if (pick_port(c, c->cfg, &c->port) < 0) {
        preflight_fail(c, 503, "no free loopback port for llama-server in the configured range");
        return;
    }
    snprintf(port, sizeof port, "%d", c->port);
    snprintf(ctx, sizeof ctx, "%d", c->cfg->llama_ctx_size);
    snprintf(np, sizeof np, "%d", c->cfg->llama_parallel);
    rpc_list[0] = split[0] = '\0';
    uint64_t total_free = 0;
    for (unsigned i = 0; i < c->n_backends; i++)
        if (!c->backends[i].excluded)
            total_free += c->backends[i].last.free_sum;
    for (unsigned i = 0; i < c->n_backends; i++) {
        struct backend *b = &c->backends[i];
        b->required = !b->excluded;
        if (b->excluded)
            continue;
        int v6 = strchr(b->addr.host, ':') != NULL;
        ro += (size_t)snprintf(rpc_list + ro, sizeof rpc_list - ro, "%s%s%s%s:%d", ro ? "," : "",
                               v6 ? "[" : "", b->addr.host, v6 ? "]" : "", b->addr.port);
        /* --tensor-split: one share per RPC device, in --rpc order,
         * proportional to its free memory (MiB, so the numbers stay short). */
        for (unsigned d = 0; d < b->last.n_devices; d++) {
            unsigned long long mib =
                total_free ? b->last.free_bytes[d] >> 20 : 1; /* unknown: equal shares */
            if (total_free && mib == 0)
                mib = 1;
            so += (size_t)snprintf(split + so, sizeof split - so, "%s%llu", so ? "," : "", mib);
        }
    }
    append_arg(argv, &n, c->cfg->llama_binary);
    append_arg(argv, &n, "-m");
    append_arg(argv, &n, c->gguf_path);
    append_arg(argv, &n, "--host");
    append_arg(argv, &n, "127.0.0.1");
    append_arg(argv, &n, "--port");
    append_arg(argv, &n, port);
    append_arg(argv, &n, "--rpc");
    append_arg(argv, &n, rpc_list);
    append_arg(argv, &n, "-ngl");
    append_arg(argv, &n, "all");
    if (split[0]) {
        append_arg(argv, &n, "--tensor-split");
        append_arg(argv, &n, split);
    }
    append_arg(argv, &n, "-c");
    append_arg(argv, &n, ctx);
    append_arg(argv, &n, "-np");
    append_arg(argv, &n, np);
    append_arg(argv, &n, "--alias");
    append_arg(argv, &n, c->model);
    const char *ex = c->cfg->llama_extra_args ? c->cfg->llama_extra_args : "";
    if (c->cfg->llama_embeddings) {
        append_arg(argv, &n, "--embeddings");
        /* A generative model's default pooling is "none", which
         * /v1/embeddings refuses: mean pooling, unless the extra
         * arguments choose one. */
        if (help_has(&c->help_llama, "--pooling") && !strstr(ex, "--pooling")) {
            append_arg(argv, &n, "--pooling");
            append_arg(argv, &n, "mean");
        }
    }
    /* The store's other layers, as Ollama passes them. */
    if (c->projector[0]) {
        append_arg(argv, &n, "--mmproj");
        append_arg(argv, &n, c->projector);
    }
    if (c->adapter[0]) {
        append_arg(argv, &n, "--lora");
        append_arg(argv, &n, c->adapter);
    }
    /* Extra arguments: a JSON array, or words separated by spaces. */
    size_t eo = 0;
    cJSON *arr = ex[0] == '[' ? cJSON_Parse(ex) : NULL;
    if (arr) {
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (!cJSON_IsString(it))
                continue;
            size_t l = strlen(it->valuestring);
            if (eo + l + 1 > sizeof extra_store)
                break;
            memcpy(extra_store + eo, it->valuestring, l + 1);
            append_arg(argv, &n, extra_store + eo);
            eo += l + 1;
        }
        cJSON_Delete(arr);
    } else {
        snprintf(extra_store, sizeof extra_store, "%s", ex);
        for (char *save = NULL, *w = strtok_r(extra_store, " \t", &save); w;
             w = strtok_r(NULL, " \t", &save))
            append_arg(argv, &n, w);
    }
    argv[n] = NULL;
    char err[1024];
    c->cause_pending = 0; /* the new one's lines say nothing of the last exit */
    c->llama = spawn(c, "llama-server", argv, 1, on_llama_exit, c, err, sizeof err);
    if (!c->llama) {
        preflight_fail(c, 503, err);
        return;
    }
    SOL_INFO("coordinator: llama-server pid %d on 127.0.0.1:%d --rpc %s --tensor-split %s",
             c->llama->pid, c->port, rpc_list, split[0] ? split : "-");
    snprintf(c->base_url, sizeof c->base_url, "http://127.0.0.1:%d", c->port);
    free(c->node->base_url);
    c->node->base_url = strdup(c->base_url);
    char host[64];
    snprintf(host, sizeof host, "Host: 127.0.0.1:%d", c->port);
    curl_slist_free_all(c->node->headers);
    c->node->headers = curl_slist_append(NULL, host);
    c->launched_at = now_ms(c);
    c->next_health = c->launched_at + 50;
    c->step = ST_LAUNCHED;
    snprintf(c->reason, sizeof c->reason, "loading model");
}

static void record_crash(struct sol_coord *c, uint64_t now)
{
    if (c->n_crashes == MAX_CRASHES) {
        memmove(c->crashes, c->crashes + 1, (MAX_CRASHES - 1) * sizeof *c->crashes);
        c->n_crashes--;
    }
    c->crashes[c->n_crashes++] = now;
}

static unsigned crashes_in_window(const struct sol_coord *c, uint64_t now)
{
    unsigned k = 0;
    for (unsigned i = 0; i < c->n_crashes; i++)
        k += now - c->crashes[i] < c->cfg->llama_crash_window_ms;
    return k;
}

static void on_llama_exit(struct sol_child *ch)
{
    struct sol_coord *c = ch->ud;
    if (c->llama == ch)
        c->llama = NULL;
    c->suspect = 0;
    if (c->health_running) {
        c->ops.health_cancel(c);
        c->health_running = 0;
    }
    for (unsigned i = 0; i < c->n_backends; i++)
        if (c->backends[i].probe && c->step != ST_PROBING) {
            c->ops.probe_cancel(c->backends[i].probe);
            c->backends[i].probe = NULL;
        }
    /* The cause as llama.cpp printed it (GGML_NO_BACKTRACE=1: no gdb
     * frames), e.g. "E ... ggml-rpc.cpp:NNN: ...". */
    char cause[SOL_CHILD_LINE_MAX + 1];
    ring_cause(c, cause, sizeof cause);
    uint64_t now = now_ms(c);
    int at_once = !ch->stop_requested && now - c->launched_at < 2000;
    if (ch->term_signal)
        snprintf(c->last_exit_head, sizeof c->last_exit_head, "killed by signal %d",
                 ch->term_signal);
    else
        snprintf(c->last_exit_head, sizeof c->last_exit_head, "exit status %lld%s",
                 (long long)ch->exit_status,
                 at_once && ch->exit_status == 0 ? " right after start" : "");
    snprintf(c->last_exit, sizeof c->last_exit, "%s%s%s", c->last_exit_head, cause[0] ? ": " : "",
             cause);
    c->cause_pending = 1;
    if (c->stopping) {
        /* llama-server first, then the local rpc servers it used: it
         * aborts when a backend goes away under it, even at its own exit. */
        for (unsigned i = 0; i < c->n_locals; i++)
            c->ops.stop(c->locals[i].ch);
        return;
    }
    if (ch->stop_requested && c->lost_restart) {
        /* Stopped because a backend it used is gone: not a crash. */
        c->lost_restart = 0;
        c->restart_at = now;
        coord_set_state(c, CS_RESTARTING, ST_BACKOFF);
        return;
    }
    if (ch->stop_requested && c->step == ST_STOPPING) {
        /* Planned: idle unload or a model switch. */
        SOL_INFO("coordinator: llama-server stopped (%s)", c->last_exit);
        if (c->next_model[0]) {
            snprintf(c->model, sizeof c->model, "%s", c->next_model);
            c->next_model[0] = '\0';
        }
        coord_set_state(c, CS_STOPPED, ST_IDLE);
        if (coord_queued(c))
            coord_begin(c, CS_STARTING);
        return;
    }
    SOL_WARN("coordinator: llama-server exited unexpectedly (%s)", c->last_exit);
    record_crash(c, now);
    c->restarts++;
    unsigned k = crashes_in_window(c, now);
    if (k >= (unsigned)c->cfg->llama_crash_limit) {
        char tail[400], msg[600];
        ring_tail(c, 5, tail, sizeof tail);
        snprintf(msg, sizeof msg,
                 "sharded model %s failed: llama-server exited %u times in %u s (last: %s); "
                 "last log lines: %s",
                 c->model, k, c->cfg->llama_crash_window_ms / 1000, c->last_exit, tail);
        SOL_ERROR("coordinator: %s", msg);
        snprintf(c->reason, sizeof c->reason, "%s", msg);
        c->failed_preflight = 0;
        c->fail_status = 503;
        c->failed_at = now;
        coord_set_state(c, CS_FAILED, ST_IDLE);
        fail_waiting(c, 503, msg);
        return;
    }
    if (!c->backoff_ms)
        c->backoff_ms = c->cfg->llama_backoff_min_ms;
    c->restart_at = now + c->backoff_ms;
    snprintf(c->reason, sizeof c->reason, "restarting in %u ms after %s", c->backoff_ms,
             c->last_exit);
    SOL_INFO("coordinator: restarting llama-server in %u ms (exit %u in the window)", c->backoff_ms,
             k);
    c->backoff_ms = c->backoff_ms * 2 > c->cfg->llama_backoff_max_ms ? c->cfg->llama_backoff_max_ms
                                                                     : c->backoff_ms * 2;
    coord_set_state(c, CS_RESTARTING, ST_BACKOFF);
}

/* -- /health -- */

static size_t discard_body(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)p;
    (void)ud;
    return size * nmemb;
}

static void on_health_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_coord *c = SOL_CONTAINER_OF(x, struct sol_coord, health);
    long code = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    coord_health_done(c, code);
}

void coord_health_done(struct sol_coord *c, long code)
{
    c->health_running = 0;
    if (c->state == CS_READY && code != c->health_status)
        SOL_WARN("coordinator: llama-server /health answered %ld (was %ld)", code,
                 c->health_status);
    c->health_status = code;
    if (c->suspect && c->llama && c->state == CS_READY && code == 200) {
        c->suspect = 0; /* it still answers: the failure was the request's own */
        sync_node(c);
    }
    /* Stopped at the start-up timeout: its late 200 must not open the
     * slots to a process that is about to die. */
    if (c->stopping || c->step != ST_LAUNCHED || !c->llama || c->llama->stop_requested)
        return;
    if (code == 200) {
        uint64_t now = now_ms(c);
        c->ready_at = now;
        c->last_activity = now;
        c->reason[0] = '\0';
        /* Failures of the process that died say nothing of this one. */
        sol_breaker_init(&c->node->breaker);
        SOL_INFO("coordinator: llama-server ready after %llu ms (model %s)",
                 (unsigned long long)(now - c->launched_at), c->model);
        coord_set_state(c, CS_READY, ST_IDLE);
        c->next_liveness = now + LIVENESS_EVERY_MS;
    }
}

/* The real ops.health_start: a GET through the daemon's curl multi. */
static int health_start(struct sol_coord *c, const char *url)
{
    CURL *e = c->health.easy;
    if (e)
        curl_easy_reset(e);
    else
        e = c->health.easy = curl_easy_init();
    if (!e)
        return -1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    c->health.on_done = on_health_done;
    return sol_curl_uv_add(&c->d->curl, &c->health);
}

static void health_cancel(struct sol_coord *c)
{
    sol_curl_uv_cancel(&c->d->curl, &c->health);
}

static void poll_health(struct sol_coord *c)
{
    if (c->health_running)
        return;
    char url[96];
    snprintf(url, sizeof url, "%s/health", c->base_url);
    if (c->ops.health_start(c, url) == 0)
        c->health_running = 1;
}

/* -- the auto policy: which models the store holds -- */

static int scan_each(void *ud, const char *canonical)
{
    struct scan_work *w = ud;
    if (w->n >= MAX_STORE)
        return 1;
    w->keys[w->n++] = sol_model_key(canonical);
    return 0;
}

static void scan_work_fn(uv_work_t *req)
{
    struct scan_work *w = req->data;
    w->rc = sol_model_store_list(w->root, MAX_STORE, scan_each, w);
}

static void scan_done(uv_work_t *req, int status)
{
    struct scan_work *w = req->data;
    struct sol_coord *c = w->c;
    c->scan = NULL;
    if (status == 0 && !c->stopping) {
        c->n_store = w->rc > 0 ? w->n : 0;
        memcpy(c->store_keys, w->keys, c->n_store * sizeof *w->keys);
    }
    free(w);
    maybe_stopped(c);
}

static void start_scan(struct sol_coord *c)
{
    if (c->scan || !c->cfg->sharding_auto)
        return;
    c->next_scan = now_ms(c) + STORE_SCAN_MS;
    struct scan_work *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->c = c;
    w->req.data = w;
    if (sol_model_store_root(getenv("OLLAMA_MODELS"), getenv("HOME"), w->root, sizeof w->root) <
            0 ||
        uv_queue_work(c->d->loop, &w->req, scan_work_fn, scan_done) < 0) {
        free(w);
        return;
    }
    c->scan = w;
}

int coord_store_has(const struct sol_coord *c, uint64_t key)
{
    for (unsigned i = 0; i < c->n_store; i++)
        if (c->store_keys[i] == key)
            return 1;
    return 0;
}

/* -- the tick: timeouts, restarts, idle unload, liveness -- */

void coord_stop_llama(struct sol_coord *c, const char *why)
{
    if (!c->llama)
        return;
    SOL_INFO("coordinator: stopping llama-server: %s", why);
    c->step = ST_STOPPING;
    c->ops.stop(c->llama);
}

static void on_tick(uv_timer_t *t)
{
    coord_tick(t->data);
}

void coord_tick(struct sol_coord *c)
{
    if (c->stopping)
        return;
    uint64_t now = now_ms(c);
    if (c->cfg->sharding_auto && now >= c->next_scan)
        start_scan(c);
    for (unsigned i = 0; i < c->n_locals; i++) {
        struct local_rpc *l = &c->locals[i];
        if (!l->ch && l->restart_at && now >= l->restart_at)
            local_start(l);
    }
    if (c->help_rpc.state >= 2 && !c->locals_started) {
        c->locals_started = 1;
        for (unsigned i = 0; i < c->n_locals; i++) {
            const struct local_rpc *l = &c->locals[i];
            if (l->mem_mb > 0 && !help_has(&c->help_rpc, "-m"))
                SOL_WARN("local_rpc_servers: port %d: \"mem\" ignored: %s has no -m/--mem "
                         "(removed from llama.cpp in 2025-10; it reports its real free memory)",
                         l->port, c->help_rpc.path);
            if (l->device[0] && !help_has(&c->help_rpc, "-d"))
                SOL_WARN("local_rpc_servers: port %d: \"device\" ignored: %s has no -d/--device",
                         l->port, c->help_rpc.path);
            if (l->cache && !help_has(&c->help_rpc, "-c"))
                SOL_WARN("local_rpc_servers: port %d: no tensor cache: %s has no -c/--cache",
                         l->port, c->help_rpc.path);
        }
        for (unsigned i = 0; i < c->n_locals; i++)
            local_start(&c->locals[i]);
    }
    if (now >= c->next_backend_check) {
        c->next_backend_check = now + LIVENESS_EVERY_MS;
        backend_checks(c, now);
    }
    switch (c->step) {
    case ST_LEARNING:
        if (helps_done(c)) {
            if (c->state == CS_STOPPED && !coord_queued(c)) {
                start_survey(c);
            } else {
                enum cstate s = c->state == CS_STOPPED ? CS_STARTING : c->state;
                coord_begin(c, s);
            }
        }
        break;
    case ST_REFERENCE:
        ref_tick(c, now);
        break;
    case ST_LAUNCHED:
        if (now - c->launched_at >= c->cfg->llama_startup_timeout_ms) {
            SOL_ERROR("coordinator: llama-server not healthy %u ms after launch",
                      c->cfg->llama_startup_timeout_ms);
            /* Counts as a crash: it is killed and restarted with backoff. */
            c->ops.stop(c->llama);
            c->launched_at = now; /* one stop request per timeout */
        } else if (now >= c->next_health) {
            c->next_health = now + HEALTH_EVERY_MS;
            poll_health(c);
        }
        break;
    case ST_BACKOFF:
    case ST_WAIT_BACKENDS:
        if (now >= c->restart_at)
            start_probes(c);
        break;
    default:
        break;
    }
    if (c->state == CS_READY && c->step == ST_IDLE) {
        if (now - c->ready_at >= c->cfg->llama_healthy_reset_ms)
            c->backoff_ms = 0; /* healthy long enough: the next restart is quick */
        if (now >= c->next_liveness || (c->suspect && !c->health_running)) {
            /* An rpc server serves one client: no probe may touch the ones
             * llama-server holds (a connect would wait in their backlog of
             * one). Their health is llama-server's /health, its connections
             * to them (check_connections) and the requests' outcomes. */
            c->next_liveness = now + LIVENESS_EVERY_MS;
            poll_health(c);
        }
        unsigned idle = c->cfg->llama_idle_unload_ms;
        if (idle && c->node->in_flight == 0 && now - c->last_activity >= idle && !coord_queued(c))
            coord_stop_llama(c, "idle");
        else if (c->next_model[0] && c->node->in_flight == 0)
            coord_stop_llama(c, "switching model");
    }
    if (c->state == CS_FAILED && !c->failed_preflight &&
        now - c->failed_at >= c->cfg->llama_crash_window_ms) {
        c->n_crashes = 0;  /* a later request may try again, */
        c->backoff_ms = 0; /* and its first restart is a quick one */
    }
}

/* ---- local rpc-servers --------------------------------------------------- */

static void local_exit(struct sol_child *ch)
{
    struct local_rpc *l = ch->ud;
    l->ch = NULL;
    struct sol_coord *c = l->c;
    if (c->stopping)
        return;
    if (!l->backoff_ms)
        l->backoff_ms = c->cfg->llama_backoff_min_ms;
    l->restart_at = now_ms(c) + l->backoff_ms;
    l->restarts++;
    /* What it said: an rpc server that refuses its arguments prints why
     * and exits 0 at once, which is a failure, not a clean stop. */
    char tail[400], cause[SOL_CHILD_LINE_MAX + 1], status[48];
    sol_child_tail(ch, 3, tail, sizeof tail, cause, sizeof cause);
    if (ch->term_signal)
        snprintf(status, sizeof status, "killed by signal %d", ch->term_signal);
    else
        snprintf(status, sizeof status, "exit status %lld%s", (long long)ch->exit_status,
                 now_ms(c) - l->started_at < 2000 ? " right after start" : "");
    SOL_WARN("local rpc server on port %d exited (%s%s%s); restart in %u ms", l->port, status,
             cause[0] || tail[0] ? ": " : "", cause[0] ? cause : tail, l->backoff_ms);
    l->backoff_ms = l->backoff_ms * 2 > c->cfg->llama_backoff_max_ms ? c->cfg->llama_backoff_max_ms
                                                                     : l->backoff_ms * 2;
}

static void local_start(struct local_rpc *l)
{
    struct sol_coord *c = l->c;
    char port[16], mem[24], err[400];
    snprintf(port, sizeof port, "%d", l->port);
    char *argv[16];
    size_t n = 0;
    argv[n++] = c->help_rpc.path;
    argv[n++] = "-H";
    argv[n++] = l->host;
    argv[n++] = "-p";
    argv[n++] = port;
    /* Only flags the installed server has (warned once, at start-up). */
    if (l->mem_mb > 0 && help_has(&c->help_rpc, "-m")) {
        snprintf(mem, sizeof mem, "%ld", l->mem_mb);
        argv[n++] = "-m";
        argv[n++] = mem;
    }
    if (l->device[0] && help_has(&c->help_rpc, "-d")) {
        argv[n++] = "-d";
        argv[n++] = l->device;
    }
    if (l->cache && help_has(&c->help_rpc, "-c"))
        argv[n++] = "-c"; /* tensor cache: a restart does not re-send weights */
    argv[n] = NULL;
    char label[64];
    snprintf(label, sizeof label, "rpc-server :%d", l->port);
    l->restart_at = 0;
    l->started_at = now_ms(c);
    l->ch = spawn(c, label, argv, 0, local_exit, l, err, sizeof err);
    if (!l->ch) {
        SOL_ERROR("%s", err);
        l->restart_at = now_ms(c) + (l->backoff_ms ? l->backoff_ms : 1000);
    }
}

static int parse_locals(struct sol_coord *c, char *err, size_t errlen)
{
    const char *text = c->cfg->local_rpc_servers ? c->cfg->local_rpc_servers : "[]";
    cJSON *arr = cJSON_Parse(text);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        snprintf(err, errlen, "local_rpc_servers: expected a JSON array");
        return -1;
    }
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (c->n_locals >= MAX_BACKENDS)
            break;
        struct local_rpc *l = &c->locals[c->n_locals];
        memset(l, 0, sizeof *l);
        l->c = c;
        l->cache = 1;
        snprintf(l->host, sizeof l->host, "127.0.0.1");
        const cJSON *port = cJSON_IsNumber(it) ? it : cJSON_GetObjectItemCaseSensitive(it, "port");
        if (!cJSON_IsNumber(port) || port->valuedouble < 1 || port->valuedouble > 65535) {
            snprintf(err, errlen, "local_rpc_servers: each entry needs a port (1..65535)");
            rc = -1;
            break;
        }
        l->port = (int)port->valuedouble;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(it, "host");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(it, "device");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "mem");
        const cJSON *cache = cJSON_GetObjectItemCaseSensitive(it, "cache");
        if (cJSON_IsString(h))
            snprintf(l->host, sizeof l->host, "%s", h->valuestring);
        if (cJSON_IsString(d))
            snprintf(l->device, sizeof l->device, "%s", d->valuestring);
        if (cJSON_IsNumber(m) && m->valuedouble >= 0 && m->valuedouble < 1e12)
            l->mem_mb = (long)m->valuedouble;
        if (cJSON_IsBool(cache))
            l->cache = cJSON_IsTrue(cache);
        c->n_locals++;
    }
    cJSON_Delete(arr);
    return rc;
}

/* ---- creation and shutdown ----------------------------------------------- */

static int read_small_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct sol_buf b = {0};
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0 && b.len < (1u << 20))
        sol_buf_append(&b, tmp, k);
    fclose(f);
    const char *s = sol_buf_cstr(&b);
    *out = s ? strdup(s) : NULL;
    sol_buf_free(&b);
    return *out ? 0 : -1;
}

static int add_backends(struct sol_coord *c, const char *text, const char *what, char *err,
                        size_t errlen)
{
    struct sol_rpc_addr a[MAX_BACKENDS];
    size_t n = 0;
    char why[256];
    if (sol_rpc_parse_backends(text, a, MAX_BACKENDS, &n, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return -1;
    }
    for (size_t i = 0; i < n && i < MAX_BACKENDS; i++) {
        int dup = 0;
        for (unsigned j = 0; j < c->n_backends; j++)
            dup |= strcmp(c->backends[j].addr.host, a[i].host) == 0 &&
                   c->backends[j].addr.port == a[i].port;
        if (!dup && c->n_backends < MAX_BACKENDS)
            c->backends[c->n_backends++].addr = a[i];
    }
    return 0;
}

static int parse_sharded(struct sol_coord *c, char *err, size_t errlen)
{
    const char *text = c->cfg->sharded_models ? c->cfg->sharded_models : "[]";
    cJSON *arr = text[0] == '[' ? cJSON_Parse(text) : NULL;
    char names[MAX_SHARDED][SOL_MODEL_NAME_MAX];
    unsigned n = 0;
    if (arr) {
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (cJSON_IsString(it) && n < MAX_SHARDED)
                snprintf(names[n++], SOL_MODEL_NAME_MAX, "%s", it->valuestring);
        }
        cJSON_Delete(arr);
    } else if (text[0] == '[') {
        snprintf(err, errlen, "sharded_models: invalid JSON array");
        return -1;
    } else {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", text);
        for (char *save = NULL, *w = strtok_r(copy, ", ", &save); w && n < MAX_SHARDED;
             w = strtok_r(NULL, ", ", &save))
            snprintf(names[n++], SOL_MODEL_NAME_MAX, "%s", w);
    }
    for (unsigned i = 0; i < n; i++) {
        if (sol_model_canonical(names[i], c->sharded[c->n_sharded], SOL_MODEL_NAME_MAX) < 0) {
            snprintf(err, errlen, "sharded_models: invalid model name '%.200s'", names[i]);
            return -1;
        }
        c->n_sharded++;
    }
    return 0;
}

/* The children's environment: sollold's, plus GGML_NO_BACKTRACE=1 (an
 * aborting ggml program otherwise runs gdb for a backtrace: hundreds of
 * milliseconds and dozens of lines before the cause). */
static int make_env(struct sol_coord *c)
{
    extern char **environ;
    size_t n = 0;
    int have = 0;
    for (char **e = environ; e && *e; e++, n++)
        have |= strncmp(*e, "GGML_NO_BACKTRACE=", 18) == 0;
    c->env = calloc(n + 2, sizeof *c->env);
    if (!c->env)
        return -1;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (!(c->env[k++] = strdup(*e)))
            return -1;
    if (!have && !(c->env[k++] = strdup("GGML_NO_BACKTRACE=1")))
        return -1;
    return 0;
}

static uint64_t loop_now(void *loop)
{
    return uv_now(loop);
}

int sol_coord_create(struct sol_daemon *d, const struct sol_coord_hooks *hooks, char *err,
                     size_t errlen)
{
    const struct sol_coord_ops real = {
        .now_ms = loop_now,
        .clock_ud = d->loop,
        .spawn = sol_child_spawn,
        .stop = sol_child_stop,
        .kill = sol_child_kill,
        .free_port = sol_child_free_port,
        .probe_start = sol_rpc_probe_start,
        .probe_cancel = sol_rpc_probe_cancel,
        .health_start = health_start,
        .health_cancel = health_cancel,
    };
    return sol_coord_create_ops(d, hooks, &real, err, errlen);
}

int sol_coord_create_ops(struct sol_daemon *d, const struct sol_coord_hooks *hooks,
                         const struct sol_coord_ops *ops, char *err, size_t errlen)
{
    const struct sol_config *cfg = d->cfg;
    d->coord = NULL;
    if (!cfg->model_sharding_enabled)
        return 0;
    struct sol_coord *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->d = d;
    c->hooks = *hooks;
    c->ops = *ops;
    c->cfg = cfg;
    if (add_backends(c, cfg->rpc_backends, "rpc_backends", err, errlen) < 0 ||
        parse_sharded(c, err, errlen) < 0 || parse_locals(c, err, errlen) < 0)
        goto fail;
    if (cfg->rpc_backends_file && cfg->rpc_backends_file[0]) {
        char *text = NULL;
        if (read_small_file(cfg->rpc_backends_file, &text) < 0) {
            snprintf(err, errlen, "rpc_backends_file: cannot read '%s': %s", cfg->rpc_backends_file,
                     strerror(errno));
            goto fail;
        }
        int rc = add_backends(c, text, cfg->rpc_backends_file, err, errlen);
        free(text);
        if (rc < 0)
            goto fail;
    }
    for (unsigned i = 0; i < c->n_locals; i++) {
        char addr[96];
        snprintf(addr, sizeof addr, "%s:%d", c->locals[i].host, c->locals[i].port);
        if (add_backends(c, addr, "local_rpc_servers", err, errlen) < 0)
            goto fail;
        for (unsigned j = 0; j < c->n_backends; j++)
            if (c->backends[j].addr.port == c->locals[i].port &&
                strcmp(c->backends[j].addr.host, c->locals[i].host) == 0)
                c->backends[j].local = (int)i + 1;
    }
    if (cfg->rpc_version && cfg->rpc_version[0]) {
        struct sol_rpc_version v;
        if (sol_rpc_version_parse(cfg->rpc_version, &v) < 0) {
            snprintf(err, errlen, "rpc_version: '%s' is not MAJ.MIN[.PATCH]", cfg->rpc_version);
            goto fail;
        }
    }
    /* sollol-exec lives beside sollold. */
    size_t len = sizeof c->exec_path;
    if (uv_exepath(c->exec_path, &len) < 0) {
        snprintf(err, errlen, "cannot find sollold's own path");
        goto fail;
    }
    char *slash = strrchr(c->exec_path, '/');
    if (slash)
        snprintf(slash + 1, sizeof c->exec_path - (size_t)(slash + 1 - c->exec_path),
                 "sollol-exec");
    if (ops->spawn == sol_child_spawn && access(c->exec_path, X_OK) != 0) {
        snprintf(err, errlen, "model sharding needs %s (built with sollold)", c->exec_path);
        goto fail;
    }
    if (make_env(c) < 0)
        goto oom;
    snprintf(c->help_llama.path, sizeof c->help_llama.path, "%s", cfg->llama_binary);
    find_rpc_server(c, c->help_rpc.path, sizeof c->help_rpc.path);
    SOL_INFO("coordinator: llama-server %s; rpc server %s (%s)", cfg->llama_binary,
             c->help_rpc.path, c->rpc_bin_how);

    /* The virtual node. */
    struct sol_node *n = calloc(1, sizeof *n);
    if (!n)
        goto oom;
    n->index = d->table.count;
    n->name = strdup(SOL_COORD_NODE_NAME);
    n->base_url = strdup("http://127.0.0.1:0");
    n->host_header = strdup("Host: 127.0.0.1");
    n->headers = curl_slist_append(NULL, "Host: 127.0.0.1");
    if (!n->name || !n->base_url || !n->host_header || !n->headers) {
        free(n->name);
        free(n->base_url);
        free(n->host_header);
        curl_slist_free_all(n->headers);
        free(n);
        goto oom;
    }
    n->max_concurrent = (unsigned)cfg->llama_parallel;
    n->weight = 1;
    n->external = 1;
    n->held = 1;
    n->state = SOL_NODE_UP;
    n->tags_at_ms = now_ms(c) + 1; /* its model list is the coordinator's: known */
    snprintf(n->version, sizeof n->version, "llama-server");
    d->table.nodes[d->table.count++] = n;
    d->node_ids[n->index] = sol_affinity_node_id("sollol-rpc-coordinator");
    c->node = n;
    for (unsigned i = 0; i < c->n_sharded; i++)
        sol_node_model_get(n, c->sharded[i]);
    if (c->n_sharded)
        snprintf(c->model, sizeof c->model, "%s", c->sharded[0]);
    d->coord = c;
    coord_set_state(c, CS_STOPPED, ST_IDLE);
    SOL_INFO("model sharding on: %u rpc backend(s), %u sharded model(s)%s", c->n_backends,
             c->n_sharded, cfg->sharding_auto ? ", auto policy" : "");
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    sol_coord_free(c);
    return -1;
}

void sol_coord_start(struct sol_coord *c)
{
    if (!c || c->timers_open)
        return;
    uv_timer_init(c->d->loop, &c->tick);
    uv_timer_init(c->d->loop, &c->kick);
    c->tick.data = c->kick.data = c;
    c->timers_open = 2;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    start_scan(c);
    /* What the installed programs accept; local rpc servers start and the
     * backends are surveyed once that is known (on_tick). */
    c->step = ST_LEARNING;
    help_start(c, &c->help_rpc, help_line_rpc);
    help_start(c, &c->help_llama, help_line_llama);
}

static void maybe_stopped(struct sol_coord *c)
{
    if (!c->stopping || c->timers_open || c->children_open || c->work || c->scan || c->conn ||
        !c->on_stopped)
        return;
    void (*cb)(struct sol_daemon *) = c->on_stopped;
    c->on_stopped = NULL;
    cb(c->d);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sol_coord *c = h->data;
    c->timers_open--;
    maybe_stopped(c);
}

int sol_coord_stop(struct sol_coord *c, void (*on_stopped)(struct sol_daemon *d))
{
    if (!c)
        return 0;
    if (c->stopping)
        return 1;
    c->stopping = 1;
    c->on_stopped = on_stopped;
    if (c->health_running) {
        c->ops.health_cancel(c);
        c->health_running = 0;
    }
    for (unsigned i = 0; i < c->n_backends; i++)
        if (c->backends[i].probe) {
            c->ops.probe_cancel(c->backends[i].probe);
            c->backends[i].probe = NULL;
        }
    if (c->ref_probe) {
        c->ops.probe_cancel(c->ref_probe);
        c->ref_probe = NULL;
    }
    if (c->work)
        uv_cancel((uv_req_t *)&c->work->req); /* else its done callback ends it */
    if (c->scan)
        uv_cancel((uv_req_t *)&c->scan->req);
    if (c->conn)
        uv_cancel((uv_req_t *)&c->conn->req);
    c->ops.stop(c->ref_child);
    c->ops.stop(c->help_rpc.ch);
    c->ops.stop(c->help_llama.ch);
    /* llama-server first: it aborts when an rpc server goes away under it.
     * The local rpc servers are stopped once it has exited (on_llama_exit). */
    if (c->llama && c->llama->running)
        c->ops.stop(c->llama);
    else
        for (unsigned i = 0; i < c->n_locals; i++)
            c->ops.stop(c->locals[i].ch);
    if (c->timers_open) {
        uv_close((uv_handle_t *)&c->tick, on_timer_closed);
        uv_close((uv_handle_t *)&c->kick, on_timer_closed);
    } else {
        maybe_stopped(c);
    }
    return 1;
}

void sol_coord_free(struct sol_coord *c)
{
    if (!c)
        return;
    if (c->health.easy)
        curl_easy_cleanup(c->health.easy);
    sol_buf_free(&c->help_rpc.out);
    sol_buf_free(&c->help_llama.out);
    if (c->env) {
        for (char **e = c->env; *e; e++)
            free(*e);
        free(c->env);
    }
    for (unsigned i = 0; i < c->log_count; i++)
        free(c->log_ring[(c->log_head + i) % LOG_LINES]);
    free(c);
}

/* ---- status -------------------------------------------------------------- */

cJSON *sol_coord_status_json(const struct sol_coord *c)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddBoolToObject(root, "enabled", c != NULL);
    if (!c)
        return root;
    uint64_t now = now_ms(c);
    char v[32];
    if (c->have_ref) {
        snprintf(v, sizeof v, "%u.%u.%u", c->ref.major, c->ref.minor, c->ref.patch);
        cJSON_AddStringToObject(root, "reference_version", v);
        cJSON_AddStringToObject(root, "reference_source", c->ref_source);
    } else {
        cJSON_AddNullToObject(root, "reference_version");
    }
    cJSON *bs = cJSON_AddArrayToObject(root, "backends");
    for (unsigned i = 0; i < c->n_backends; i++) {
        const struct backend *b = &c->backends[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(bs, o);
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", b->addr.host, b->addr.port);
        cJSON_AddStringToObject(o, "address", addr);
        cJSON_AddBoolToObject(o, "local", b->local);
        if (b->probed)
            cJSON_AddBoolToObject(o, "reachable", b->reachable);
        else
            cJSON_AddNullToObject(o, "reachable");
        if (b->probed && b->last.answered) {
            snprintf(v, sizeof v, "%u.%u.%u", b->last.version.major, b->last.version.minor,
                     b->last.version.patch);
            cJSON_AddStringToObject(o, "version", v);
            cJSON_AddStringToObject(o, "hello_form", b->last.v4_form ? "v4" : "v1-v3");
        } else {
            cJSON_AddNullToObject(o, "version");
        }
        cJSON_AddNumberToObject(o, "devices", b->last.n_devices);
        cJSON_AddNumberToObject(o, "free_bytes", (double)b->last.free_sum);
        cJSON_AddNumberToObject(o, "total_bytes", (double)b->last.total_sum);
        cJSON_AddBoolToObject(o, "excluded", b->excluded);
        cJSON_AddStringToObject(o, "excluded_why", b->excluded ? b->why : "");
        int in_use = b->required && c->llama != NULL && !b->lost;
        cJSON_AddBoolToObject(o, "in_use", in_use);
        /* One word for the row: what an operator acts on. */
        const char *state = !b->probed && !in_use      ? "unknown"
                            : b->down_since || b->lost ? "down"
                            : b->excluded              ? "excluded"
                            : in_use                   ? "in_use"
                                                       : "up";
        cJSON_AddStringToObject(o, "state", state);
        if (b->down_since) {
            cJSON_AddNumberToObject(o, "down_for_s", (double)(now - b->down_since) / 1000.0);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t wall_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
            char when[48];
            sol_translate_rfc3339((wall_ms - (now - b->down_since)) * 1000000ull, when,
                                  sizeof when);
            cJSON_AddStringToObject(o, "down_since", when);
        } else {
            cJSON_AddNullToObject(o, "down_since");
        }
        cJSON_AddStringToObject(o, "last_error", b->last_error);
    }
    cJSON_AddStringToObject(root, "rpc_server_binary", c->help_rpc.path);
    cJSON_AddStringToObject(root, "rpc_server_found", c->rpc_bin_how);
    cJSON *co = cJSON_AddObjectToObject(root, "coordinator");
    cJSON_AddStringToObject(co, "state", coord_state_name(c->state));
    cJSON_AddStringToObject(co, "model", c->model);
    cJSON_AddStringToObject(co, "gguf", c->gguf_path);
    cJSON_AddStringToObject(co, "reason", c->reason);
    if (c->llama) {
        cJSON_AddNumberToObject(co, "pid", c->llama->pid);
        cJSON_AddNumberToObject(co, "port", c->port);
    } else {
        cJSON_AddNullToObject(co, "pid");
        cJSON_AddNullToObject(co, "port");
    }
    cJSON_AddNumberToObject(co, "restarts", c->restarts);
    cJSON_AddNumberToObject(co, "next_backoff_ms",
                            c->backoff_ms ? c->backoff_ms : c->cfg->llama_backoff_min_ms);
    cJSON_AddNumberToObject(co, "uptime_s",
                            c->state == CS_READY ? (double)(now - c->ready_at) / 1000.0 : 0);
    cJSON_AddStringToObject(co, "last_exit", c->last_exit);
    cJSON_AddStringToObject(co, "recovery", c->lost_why);
    cJSON_AddNumberToObject(co, "health_status", (double)c->health_status);
    cJSON *lines = cJSON_AddArrayToObject(co, "last_log_lines");
    unsigned start = c->log_count > 20 ? c->log_count - 20 : 0;
    for (unsigned i = start; i < c->log_count; i++)
        cJSON_AddItemToArray(lines, cJSON_CreateString(c->log_ring[(c->log_head + i) % LOG_LINES]));
    cJSON *ls = cJSON_AddArrayToObject(root, "local_rpc_servers");
    for (unsigned i = 0; i < c->n_locals; i++) {
        const struct local_rpc *l = &c->locals[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ls, o);
        cJSON_AddNumberToObject(o, "port", l->port);
        if (l->ch)
            cJSON_AddNumberToObject(o, "pid", l->ch->pid);
        else
            cJSON_AddNullToObject(o, "pid");
        cJSON_AddNumberToObject(o, "restarts", l->restarts);
        cJSON_AddBoolToObject(o, "cache", l->cache);
    }
    return root;
}
