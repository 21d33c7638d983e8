#include "base/inspect.h"

#include <stdio.h>
#include <string.h>

struct scan_state {
    struct sol_body_info *out;
    int seen_model, seen_stream, seen_name;
    int name_alias; /* SOL_INSPECT_NAME_ALIAS: read "name" too */
    char name[SOL_MODEL_NAME_MAX];
    char *err;
    size_t errlen;
    int status;
};

/* Stops the scan with a 400 and a message. */
static int fail(struct scan_state *st, const char *msg)
{
    snprintf(st->err, st->errlen, "%s", msg);
    st->status = 400;
    return 1;
}

static int on_member(void *ud, const struct sol_json_span *key, const struct sol_json_span *v)
{
    struct scan_state *st = ud;
    struct sol_body_info *bi = st->out;
    if (sol_json_key_equals_fold(key, "model")) {
        /* A second "model" could route to one node while the node reads the
         * other: refuse the ambiguity. */
        if (st->seen_model++)
            return fail(st, "duplicate key \"model\"");
        if (v->type == SOL_JSON_NULL)
            return 0;
        if (v->type != SOL_JSON_STRING)
            return fail(st, "model must be a string");
        long n = sol_json_string_decode(v, bi->model, sizeof bi->model);
        if (n < 0)
            return fail(st, "model name is too long");
        if ((size_t)n != strlen(bi->model))
            return fail(st, "model name contains a NUL character");
    } else if (st->name_alias && sol_json_key_equals_fold(key, "name")) {
        /* Ollama's deprecated alias of "model" (model wins when both are
         * set); as ambiguous as a second "model" when repeated. */
        if (st->seen_name++)
            return fail(st, "duplicate key \"name\"");
        if (v->type == SOL_JSON_NULL)
            return 0;
        if (v->type != SOL_JSON_STRING)
            return fail(st, "name must be a string");
        long n = sol_json_string_decode(v, st->name, sizeof st->name);
        if (n < 0)
            return fail(st, "model name is too long");
        if ((size_t)n != strlen(st->name))
            return fail(st, "model name contains a NUL character");
    } else if (sol_json_key_equals_fold(key, "stream")) {
        if (st->seen_stream++)
            return fail(st, "duplicate key \"stream\"");
        if (v->type == SOL_JSON_TRUE)
            bi->stream = 1;
        else if (v->type == SOL_JSON_FALSE)
            bi->stream = 0;
        else if (v->type != SOL_JSON_NULL)
            return fail(st, "stream must be a boolean");
    } else if (sol_json_key_equals_fold(key, "options")) {
        if (v->type == SOL_JSON_OBJECT) {
            bi->options = *v;
            struct sol_json_span np;
            if (sol_json_object_get(v, "num_predict", &np) && np.type == SOL_JSON_NUMBER) {
                long long n;
                if (sol_json_number_int64(&np, &n) == 0)
                    bi->num_predict = n;
            }
        } else if (v->type != SOL_JSON_NULL) {
            return fail(st, "options must be an object");
        }
    } else if (sol_json_key_equals_fold(key, "priority")) {
        long long p;
        if (v->type == SOL_JSON_NULL)
            return 0;
        if (v->type != SOL_JSON_NUMBER || sol_json_number_int64(v, &p) < 0 || p < 1 || p > 10)
            return fail(st, "priority must be an integer from 1 to 10");
        bi->priority = (int)p;
    } else if (sol_json_key_equals_fold(key, "messages")) {
        bi->messages = *v;
    } else if (sol_json_key_equals_fold(key, "prompt")) {
        bi->prompt = *v;
    } else if (sol_json_key_equals_fold(key, "input")) {
        bi->input = *v;
    } else if (sol_json_key_equals_fold(key, "keep_alive")) {
        bi->keep_alive = *v;
    }
    return 0;
}

int sol_inspect_body(const char *body, size_t len, int needs_model, int max_depth,
                     struct sol_body_info *out, char *err, size_t errlen)
{
    int name_alias = (needs_model & SOL_INSPECT_NAME_ALIAS) != 0;
    needs_model &= SOL_INSPECT_NEEDS_MODEL;
    memset(out, 0, sizeof *out);
    out->stream = -1;
    out->num_predict = -1;
    out->priority = -1;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        snprintf(err, errlen, "missing request body");
        return 400;
    }
    struct scan_state st = {.out = out, .err = err, .errlen = errlen, .name_alias = name_alias};
    char jerr[200];
    int rc = sol_json_scan_object(body, len, max_depth, on_member, &st, jerr, sizeof jerr);
    if (st.status)
        return st.status;
    if (rc == SOL_JSON_ENOTOBJECT) {
        snprintf(err, errlen, "invalid JSON: the request body must be a JSON object");
        return 400;
    }
    if (rc != SOL_JSON_OK) {
        /* The scanner's messages already start with "invalid JSON". */
        snprintf(err, errlen, "%s", jerr);
        return 400;
    }
    /* cmp.Or(req.Model, req.Name), as Ollama's handlers read it. */
    if (out->model[0] == '\0' && st.name[0])
        memcpy(out->model, st.name, sizeof out->model);
    if (needs_model && out->model[0] == '\0') {
        snprintf(err, errlen, "model is required");
        return 400;
    }
    return 0;
}
