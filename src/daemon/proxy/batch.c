/*
 * batch.c - the batch-job API: embedding batches run in the background on
 * the daemon's loop, with no client connection attached.
 *
 *   POST   /api/batch/embed        {model, input:[...], ...} -> 202 {job_id, status, total}
 *   GET    /api/batch/jobs         every job's status
 *   GET    /api/batch/jobs/:id     one job's status and progress
 *   DELETE /api/batch/jobs/:id     cancels a queued or running job; deletes a finished one
 *   GET    /api/batch/results/:id  the embeddings (/api/embed's shape) once completed
 *
 * A job is one split (embed.c) over the whole input, run by the same chunk
 * and merge code as a large /api/embed; it leaves one slot per node to
 * interactive traffic when planning. Jobs run one at a time, in submission
 * order. Bounds: SOL_BATCH_MAX_JOBS jobs kept (queued, running or
 * finished), SOL_BATCH_MAX_INPUTS inputs per job (and the body limit),
 * SOL_BATCH_MAX_BYTES of bodies and results held by all jobs together;
 * a finished job is dropped SOL_BATCH_RETENTION_MS after it finished
 * (checked whenever the API is used).
 *
 * A job belongs to the API key that submitted it (remembered by the key's
 * SHA-256, so a reload that keeps the key keeps its jobs): another key is
 * answered 404 for it, as if it did not exist, and does not see it in the
 * list; an admin key sees and may cancel every job. A job submitted without
 * a key (keys off, or a public path) is visible to every caller that
 * presents none. Job ids carry 128 random bits (getrandom), so an id
 * cannot be guessed from another.
 *
 * The job table is process-wide (one daemon per process), so the daemon
 * object needs no field for it; sol_batch_shutdown() empties it.
 */
#include "proxy/batch.h"

#include "proxy/embed.h"
#include "proxy/request_priv.h"

#include "base/embed_plan.h"
#include "daemon-t.h"
#include "base/http_reply.h"
#include "sollol/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define SOL_BATCH_MAX_JOBS      64
#define SOL_BATCH_MAX_INPUTS    100000
#define SOL_BATCH_MAX_BYTES     (1024ull << 20)
#define SOL_BATCH_RETENTION_MS  (3600ull * 1000)
#define SOL_BATCH_RESERVE_SLOTS 1

enum job_status { JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED };

static const char *const status_names[] = {"queued", "running", "completed", "failed", "cancelled"};

struct batch_job {
    struct batch_job *prev, *next;
    char id[48];
    /* The submitting key: has_owner = 0 when none was presented. */
    int has_owner;
    unsigned char owner_sha[SOL_SHA256_LEN];
    char owner_name[64]; /* for admins' listings and the log */
    enum job_status status;
    char model[SOL_MODEL_NAME_MAX];      /* canonical */
    char model_echo[SOL_MODEL_NAME_MAX]; /* as submitted */
    struct sol_buf body;                 /* the submitted body; freed once finished */
    struct sol_json_span input;
    size_t total, done;
    struct curl_slist *headers;
    int64_t created_ms, started_ms, finished_ms; /* Unix ms; 0 = not yet */
    uint64_t finished_mono_ms;
    struct sol_embed_split *split;
    struct sol_buf result; /* the merged answer, once completed */
    unsigned error_status;
    char error[384];
};

static struct {
    struct sol_daemon *d;
    struct batch_job *head, *tail;
    unsigned count;
    unsigned long long bytes; /* bodies and results held */
    struct batch_job *running;
} g;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append_time(struct sol_buf *b, const char *key, int64_t ms)
{
    sol_buf_appendf(b, ",\"%s\":", key);
    if (!ms) {
        sol_buf_append_str(b, "null");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char text[40];
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    sol_buf_appendf(b, "\"%s.%03dZ\"", text, (int)(ms % 1000));
}

/* show_key: the caller is an admin, who sees every key's jobs, so each
 * says whose it is ("key": name, null when submitted without one). */
static void job_status_json(struct sol_buf *b, const struct batch_job *j, int show_key)
{
    sol_buf_append_str(b, "{\"job_id\":");
    sol_buf_append_json_string(b, j->id, strlen(j->id));
    if (show_key) {
        sol_buf_append_str(b, ",\"key\":");
        if (j->has_owner)
            sol_buf_append_json_string(b, j->owner_name, strlen(j->owner_name));
        else
            sol_buf_append_str(b, "null");
    }
    sol_buf_appendf(b, ",\"status\":\"%s\",\"model\":", status_names[j->status]);
    sol_buf_append_json_string(b, j->model_echo, strlen(j->model_echo));
    sol_buf_appendf(b, ",\"total\":%zu,\"done\":%zu", j->total, j->done);
    append_time(b, "created_at", j->created_ms);
    append_time(b, "started_at", j->started_ms);
    append_time(b, "finished_at", j->finished_ms);
    append_time(b, "expires_at",
                j->finished_ms ? j->finished_ms + (int64_t)SOL_BATCH_RETENTION_MS : 0);
    sol_buf_append_str(b, ",\"error\":");
    if (j->error[0])
        sol_buf_append_json_string(b, j->error, strlen(j->error));
    else
        sol_buf_append_str(b, "null");
    sol_buf_append_str(b, "}");
}

static void job_drop_body(struct batch_job *j)
{
    g.bytes -= j->body.cap;
    sol_buf_free(&j->body);
    curl_slist_free_all(j->headers);
    j->headers = NULL;
}

static void job_free(struct batch_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        g.head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        g.tail = j->prev;
    g.count--;
    if (g.running == j)
        g.running = NULL;
    sol_embed_split_free(j->split);
    job_drop_body(j);
    g.bytes -= j->result.cap;
    sol_buf_free(&j->result);
    free(j);
}

static void job_finish(struct batch_job *j, enum job_status st)
{
    j->status = st;
    j->finished_ms = wall_ms();
    j->finished_mono_ms = g.d ? sol_now_ms(g.d) : 0;
    if (g.running == j)
        g.running = NULL;
    job_drop_body(j);
}

/* Whether the caller of r may see (and cancel, delete, read) job j: with
 * keys off everyone may; an admin key may see every job; otherwise only the
 * key that submitted it (compared by its SHA-256), or, for a job submitted
 * without a key, a caller that presents none either. */
static int job_visible(const struct sol_request *r, const struct batch_job *j)
{
    const struct sol_auth_key *k = r->auth_key;
    if (!sol_auth_enabled(&r->d->auth))
        return 1;
    if (k && k->admin)
        return 1;
    if (!k || !j->has_owner)
        return !k && !j->has_owner;
    return sol_ct_equal(k->sha, j->owner_sha, SOL_SHA256_LEN);
}

static int caller_is_admin(const struct sol_request *r)
{
    return sol_auth_enabled(&r->d->auth) && r->auth_key && r->auth_key->admin;
}

/* The job with this id the caller may see, or NULL (absent and not theirs
 * look the same). */
static struct batch_job *job_find(const struct sol_request *r, const char *id)
{
    for (struct batch_job *j = g.head; j; j = j->next)
        if (strcmp(j->id, id) == 0)
            return job_visible(r, j) ? j : NULL;
    return NULL;
}

/* "emb-" and 128 random bits in hex. 0, or -1 when the kernel has no
 * randomness to give without blocking (only early in boot). */
static int new_job_id(char *out, size_t len)
{
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, GRND_NONBLOCK);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    static const char hex[] = "0123456789abcdef";
    char text[2 * sizeof raw + 1];
    for (size_t i = 0; i < sizeof raw; i++) {
        text[2 * i] = hex[raw[i] >> 4];
        text[2 * i + 1] = hex[raw[i] & 15];
    }
    text[2 * sizeof raw] = '\0';
    snprintf(out, len, "emb-%s", text);
    return 0;
}

/* Drops finished jobs past their retention. */
static void purge(struct sol_daemon *d)
{
    uint64_t now = sol_now_ms(d);
    for (struct batch_job *j = g.head, *next; j; j = next) {
        next = j->next;
        if (j->status >= JOB_COMPLETED && now - j->finished_mono_ms >= SOL_BATCH_RETENTION_MS) {
            SOL_INFO("batch job %s: dropped (finished more than %llu s ago)", j->id,
                     (unsigned long long)(SOL_BATCH_RETENTION_MS / 1000));
            job_free(j);
        }
    }
}

static void pump(void);

static void on_job_progress(void *ud, size_t done, size_t total)
{
    (void)total;
    struct batch_job *j = ud;
    j->done = done;
}

static void on_job_done(void *ud, struct sol_embed_split *s)
{
    struct batch_job *j = ud;
    unsigned status = 0;
    char err[384];
    j->split = NULL;
    if (sol_embed_split_result(s, &j->result, &status, err, sizeof err) == 0) {
        g.bytes += j->result.cap;
        j->done = j->total;
        job_finish(j, JOB_COMPLETED);
        SOL_INFO("batch job %s: completed (%zu inputs)", j->id, j->total);
    } else {
        sol_buf_free(&j->result);
        j->error_status = status;
        snprintf(j->error, sizeof j->error, "%s", err);
        job_finish(j, JOB_FAILED);
        SOL_WARN("batch job %s: failed: %s", j->id, err);
    }
    sol_embed_split_free(s);
    pump();
}

/* Starts queued jobs while none runs. */
static void pump(void)
{
    while (!g.running && g.d && !g.d->stopping) {
        struct batch_job *j = g.head;
        while (j && j->status != JOB_QUEUED)
            j = j->next;
        if (!j)
            return;
        struct sol_embed_split_params p = {.d = g.d,
                                           .id = j->id,
                                           .path = "/api/embed",
                                           .body = j->body.data,
                                           .body_len = j->body.len,
                                           .input = j->input,
                                           .n_inputs = j->total,
                                           .model = j->model,
                                           .model_echo = j->model_echo,
                                           .headers = j->headers,
                                           .reserve_slots = SOL_BATCH_RESERVE_SLOTS,
                                           .min_chunk = SOL_EMBED_MIN_CHUNK,
                                           .allow_single = 1,
                                           .on_progress = on_job_progress,
                                           .on_done = on_job_done,
                                           .ud = j};
        unsigned status = 0;
        char err[384];
        j->started_ms = wall_ms();
        if (sol_embed_split_start(&p, &j->split, &status, err, sizeof err) == 0) {
            j->status = JOB_RUNNING;
            g.running = j;
            SOL_INFO("batch job %s: running (%zu inputs)", j->id, j->total);
        } else {
            j->error_status = status;
            snprintf(j->error, sizeof j->error, "%s", err);
            job_finish(j, JOB_FAILED);
            SOL_WARN("batch job %s: failed: %s", j->id, err);
        }
    }
}

/* ---- answers ------------------------------------------------------------- */

/* The answer is in r->stream: commit it (request.c queues it). */
static int answer(struct sol_request *r, unsigned status)
{
    r->status = status;
    snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
    r->content_length = (long long)sol_buf_pending(&r->stream);
    r->upstream_done = 1;
    r->state = RS_UPSTREAM;
    sol_req_commit(r);
    return 1;
}

static int oom(struct sol_request *r)
{
    sol_buf_clear(&r->stream);
    return sol_req_fail(r, 500, "out of memory");
}

static int submit(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    if (d->stopping)
        return sol_req_fail(r, 503, "sollold is shutting down");
    const struct sol_json_span *in = &r->info.input;
    if (!in->p || in->type != SOL_JSON_ARRAY)
        return sol_req_fail(r, 400, "input must be an array of strings");
    int all_strings;
    size_t n = sol_embed_count_inputs(in, &all_strings);
    if (!all_strings)
        return sol_req_fail(r, 400, "input must be an array of strings");
    if (n == 0)
        return sol_req_fail(r, 400, "input is empty");
    if (n > SOL_BATCH_MAX_INPUTS)
        return sol_req_fail(r, 413, "batch too large: %zu inputs (limit %d)", n,
                            SOL_BATCH_MAX_INPUTS);
    int anywhere = 0;
    for (unsigned i = 0; i < d->table.count; i++) {
        const struct sol_node_model *m = sol_node_find_model(d->table.nodes[i], r->score.model_key);
        anywhere |= (m && m->installed && !m->gone) || d->table.nodes[i]->tags_at_ms == 0;
    }
    if (!anywhere)
        return sol_req_fail(r, 404, "model '%.200s' not found on any node", r->info.model);
    if (g.count >= SOL_BATCH_MAX_JOBS)
        return sol_req_fail(
            r, 503,
            "too many batch jobs (limit %d, finished ones included): delete finished "
            "jobs or wait until they expire",
            SOL_BATCH_MAX_JOBS);
    if (g.bytes + r->body.cap > SOL_BATCH_MAX_BYTES)
        return sol_req_fail(
            r, 503,
            "batch jobs hold too much memory (limit %llu bytes): delete finished jobs "
            "or wait until they expire",
            (unsigned long long)SOL_BATCH_MAX_BYTES);

    struct batch_job *j = calloc(1, sizeof *j);
    if (!j)
        return oom(r);
    if (new_job_id(j->id, sizeof j->id) < 0) {
        free(j);
        return sol_req_fail(r, 503, "no randomness available for a job id yet: retry");
    }
    if (sol_auth_enabled(&d->auth) && r->auth_key) {
        j->has_owner = 1;
        memcpy(j->owner_sha, r->auth_key->sha, sizeof j->owner_sha);
        snprintf(j->owner_name, sizeof j->owner_name, "%s", r->auth_key->name);
    }
    g.d = d;
    snprintf(j->model, sizeof j->model, "%s", r->model);
    snprintf(j->model_echo, sizeof j->model_echo, "%s", r->info.model);
    /* The job takes the body over; the spans into it stay valid. */
    j->body = r->body;
    memset(&r->body, 0, sizeof r->body);
    j->input = *in;
    j->total = n;
    j->status = JOB_QUEUED;
    j->created_ms = wall_ms();
    for (struct curl_slist *h = r->client_headers; h; h = h->next) {
        if (strncasecmp(h->data, "X-Request-Id:", 13) == 0)
            continue;
        struct curl_slist *l = curl_slist_append(j->headers, h->data);
        if (l)
            j->headers = l;
    }
    char line[96];
    snprintf(line, sizeof line, "X-Request-Id: %s", j->id);
    struct curl_slist *l = curl_slist_append(j->headers, line);
    if (l)
        j->headers = l;
    g.bytes += j->body.cap;
    j->prev = g.tail;
    if (g.tail)
        g.tail->next = j;
    else
        g.head = j;
    g.tail = j;
    g.count++;
    SOL_INFO("batch job %s: queued (%zu inputs of model %s, key %s)", j->id, n, j->model,
             j->has_owner ? j->owner_name : "none");
    pump();

    sol_buf_append_str(&r->stream, "{\"job_id\":");
    sol_buf_append_json_string(&r->stream, j->id, strlen(j->id));
    sol_buf_appendf(&r->stream, ",\"status\":\"%s\",\"total\":%zu}", status_names[j->status], n);
    snprintf(line, sizeof line, "Location: /api/batch/jobs/%s", j->id);
    if ((l = curl_slist_append(r->response_headers, line)))
        r->response_headers = l;
    return answer(r, 202);
}

static int list(struct sol_request *r)
{
    int rc = sol_buf_append_str(&r->stream, "{\"jobs\":[");
    int first = 1, admin = caller_is_admin(r);
    for (struct batch_job *j = g.head; j; j = j->next) {
        if (!job_visible(r, j))
            continue;
        if (!first)
            rc |= sol_buf_append_str(&r->stream, ",");
        first = 0;
        job_status_json(&r->stream, j, admin);
    }
    rc |= sol_buf_append_str(&r->stream, "]}");
    return rc ? oom(r) : answer(r, 200);
}

static int cancel_or_delete(struct sol_request *r, struct batch_job *j)
{
    if (j->status == JOB_QUEUED || j->status == JOB_RUNNING) {
        int was_running = j->status == JOB_RUNNING;
        sol_embed_split_free(j->split); /* cancels its transfers */
        j->split = NULL;
        job_finish(j, JOB_CANCELLED);
        SOL_INFO("batch job %s: cancelled (%zu of %zu inputs done)", j->id, j->done, j->total);
        job_status_json(&r->stream, j, caller_is_admin(r));
        if (was_running)
            pump();
        return answer(r, 200);
    }
    sol_buf_append_str(&r->stream, "{\"job_id\":");
    sol_buf_append_json_string(&r->stream, j->id, strlen(j->id));
    sol_buf_append_str(&r->stream, ",\"status\":\"deleted\"}");
    SOL_INFO("batch job %s: deleted", j->id);
    job_free(j);
    return answer(r, 200);
}

static int results(struct sol_request *r, struct batch_job *j)
{
    switch (j->status) {
    case JOB_COMPLETED:
        if (sol_buf_append(&r->stream, j->result.data, j->result.len) < 0)
            return oom(r);
        return answer(r, 200);
    case JOB_FAILED:
        return sol_req_fail(r, 409, "batch job %s failed: %s", j->id, j->error);
    case JOB_CANCELLED:
        return sol_req_fail(r, 409, "batch job %s was cancelled", j->id);
    default:
        return sol_req_fail(r, 409, "batch job %s is %s (%zu of %zu inputs done)", j->id,
                            status_names[j->status], j->done, j->total);
    }
}

int sol_batch_serve(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    g.d = d;
    purge(d);
    const char *path = r->path;
    if (strcmp(path, "/api/batch/embed") == 0)
        return submit(r);
    if (strcmp(path, "/api/batch/jobs") == 0)
        return list(r);
    const char *id = NULL;
    int is_results = 0;
    if (strncmp(path, "/api/batch/jobs/", 16) == 0)
        id = path + 16;
    else if (strncmp(path, "/api/batch/results/", 19) == 0) {
        id = path + 19;
        is_results = 1;
    }
    struct batch_job *j = id ? job_find(r, id) : NULL;
    if (!j)
        return sol_req_fail(r, 404, "batch job '%.100s' not found", id ? id : "");
    if (is_results)
        return results(r, j);
    if (strcmp(r->method, "DELETE") == 0)
        return cancel_or_delete(r, j);
    job_status_json(&r->stream, j, caller_is_admin(r));
    return answer(r, 200);
}

void sol_batch_shutdown(struct sol_daemon *d)
{
    (void)d;
    while (g.head)
        job_free(g.head);
    g.bytes = 0;
}

static enum sol_take batch_take(struct sol_request *r)
{
    if (!(r->route->flags & SOL_RF_BATCH))
        return SOL_TAKE_PASS;
    return (enum sol_take)sol_batch_serve(r);
}

const struct sol_req_kind sol_batch_kind = {
    .name = "batch",
    .take = batch_take,
    .shutdown = sol_batch_shutdown,
};
