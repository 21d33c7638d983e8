/*
 * jsonreq.c - reading a request's JSON body the way Go's encoding/json does:
 * the same validation order and error messages (a scanner that mirrors Go's),
 * then typed field access that reports Go's "cannot unmarshal" errors.
 * Used by every handler (api.c, infer.c, control.c); it prepares error answers
 * through reply.c.
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsNumber(v))
        return "number";
    if (cJSON_IsBool(v))
        return "bool";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "null";
}

/* ---- Go's JSON syntax errors ----
 * Walks the first JSON value of a body the way encoding/json's decoder does
 * and reports its message for the first offending byte ("unexpected EOF"
 * when the input ends early). What follows that value is ignored, as
 * json.Decoder ignores it. */

struct jscan {
    const unsigned char *p, *end;
    char *msg;
    size_t msglen;
    int depth;
};

static void quote_char(unsigned char c, char *out, size_t n)
{
    if (c == '\'')
        snprintf(out, n, "'\\''");
    else if (c == '"')
        snprintf(out, n, "'\"'");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(out, n, "'%c'", c);
    else if (c == '\n')
        snprintf(out, n, "'\\n'");
    else if (c == '\r')
        snprintf(out, n, "'\\r'");
    else if (c == '\t')
        snprintf(out, n, "'\\t'");
    else if (c < 0x80 || (c >= 0x80 && c < 0xa0) || c == 0xad)
        snprintf(out, n, c < 0x80 ? "'\\x%02x'" : "'\\u%04x'", c);
    else /* Go quotes the byte as the rune U+00XX */
        snprintf(out, n, "'%c%c'", 0xc0 | (c >> 6), 0x80 | (c & 0x3f));
}

static int js_fail(struct jscan *j, const char *context)
{
    if (j->p >= j->end) {
        snprintf(j->msg, j->msglen, "unexpected EOF");
    } else {
        char q[16];
        quote_char(*j->p, q, sizeof q);
        snprintf(j->msg, j->msglen, "invalid character %s %s", q, context);
    }
    return 0;
}

static void js_ws(struct jscan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int js_value(struct jscan *j);

static int js_string(struct jscan *j)
{
    j->p++; /* opening quote */
    while (j->p < j->end) {
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return 1;
        }
        if (c < 0x20)
            return js_fail(j, "in string literal");
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return js_fail(j, "");
            if (*j->p == 'u') {
                for (int i = 0; i < 4; i++) {
                    j->p++;
                    if (j->p >= j->end || !isxdigit(*j->p))
                        return js_fail(j, "in \\u hexadecimal character escape");
                }
            } else if (!strchr("\"\\/bfnrt", *j->p)) {
                return js_fail(j, "in string escape code");
            }
        }
        j->p++;
    }
    return js_fail(j, "");
}

static int js_digits(struct jscan *j)
{
    int n = 0;
    while (j->p < j->end && isdigit(*j->p)) {
        j->p++;
        n++;
    }
    return n;
}

static int js_number(struct jscan *j)
{
    if (*j->p == '-') {
        j->p++;
        if (j->p >= j->end || !isdigit(*j->p))
            return js_fail(j, "in numeric literal");
    }
    if (*j->p == '0')
        j->p++;
    else
        js_digits(j);
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!js_digits(j))
            return js_fail(j, "after decimal point in numeric literal");
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!js_digits(j))
            return js_fail(j, "in exponent of numeric literal");
    }
    return 1;
}

static int js_literal(struct jscan *j, const char *word)
{
    for (size_t i = 0; word[i]; i++, j->p++) {
        if (j->p >= j->end || *j->p != (unsigned char)word[i]) {
            char ctx[48];
            snprintf(ctx, sizeof ctx, "in literal %s (expecting '%c')", word, word[i]);
            return js_fail(j, ctx);
        }
    }
    return 1;
}

static int js_value(struct jscan *j)
{
    js_ws(j);
    if (j->p >= j->end)
        return js_fail(j, "");
    if (++j->depth > 10000)
        return js_fail(j, "looking for beginning of value");
    unsigned char c = *j->p;
    int ok = 1;
    if (c == '{') {
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
        } else {
            for (;;) {
                js_ws(j);
                if (j->p >= j->end || *j->p != '"') {
                    ok = js_fail(j, "looking for beginning of object key string");
                    break;
                }
                if (!(ok = js_string(j)))
                    break;
                js_ws(j);
                if (j->p >= j->end || *j->p != ':') {
                    ok = js_fail(j, "after object key");
                    break;
                }
                j->p++;
                if (!(ok = js_value(j)))
                    break;
                js_ws(j);
                if (j->p < j->end && *j->p == ',') {
                    j->p++;
                    continue;
                }
                if (j->p < j->end && *j->p == '}') {
                    j->p++;
                    break;
                }
                ok = js_fail(j, "after object key:value pair");
                break;
            }
        }
    } else if (c == '[') {
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
        } else {
            for (;;) {
                if (!(ok = js_value(j)))
                    break;
                js_ws(j);
                if (j->p < j->end && *j->p == ',') {
                    j->p++;
                    continue;
                }
                if (j->p < j->end && *j->p == ']') {
                    j->p++;
                    break;
                }
                ok = js_fail(j, "after array element");
                break;
            }
        }
    } else if (c == '"') {
        ok = js_string(j);
    } else if (c == '-' || isdigit(c)) {
        ok = js_number(j);
    } else if (c == 't') {
        ok = js_literal(j, "true");
    } else if (c == 'f') {
        ok = js_literal(j, "false");
    } else if (c == 'n') {
        ok = js_literal(j, "null");
    } else {
        ok = js_fail(j, "looking for beginning of value");
    }
    j->depth--;
    return ok;
}

/* 1 when Go's decoder accepts the first JSON value of the body; else 0 and
 * Go's message for the first offending byte. */
static int go_json_valid(const char *p, size_t n, char *msg, size_t msglen)
{
    struct jscan j = {(const unsigned char *)p, (const unsigned char *)p + n, msg, msglen, 0};
    return js_value(&j);
}

static int only_space(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)p[i]))
            return 0;
    return 1;
}

cJSON *req_body_object(struct sim_req *r, const char *gotype, int oai)
{
    if (r->h.body.len == 0 || only_space(r->h.body.p, r->h.body.len)) {
        if (oai)
            req_error_oai(r, 400, "invalid_request_error", "EOF", 0);
        else
            req_error(r, 400, "missing request body");
        return NULL;
    }
    /* Go's decoder decides what is valid (cJSON is more lenient: "1.",
     * raw control characters in strings), and what the error says. */
    char msg[160];
    if (!go_json_valid(r->h.body.p, r->h.body.len, msg, sizeof msg)) {
        if (oai)
            req_error_oai(r, 400, "invalid_request_error", msg, 0);
        else
            req_error(r, 400, msg);
        return NULL;
    }
    if (!r->json) {
        r->json = cJSON_ParseWithLength(r->h.body.p, r->h.body.len);
        go_json_fold(r->json);
    }
    if (!r->json) {
        if (oai)
            req_error_oai(r, 400, "invalid_request_error", "invalid JSON", 0);
        else
            req_error(r, 400, "invalid JSON");
        return NULL;
    }
    if (cJSON_IsNull(r->json)) {
        /* Go decodes null into a struct as "nothing set". */
        cJSON_Delete(r->json);
        r->json = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(r->json)) {
        snprintf(msg, sizeof msg, "json: cannot unmarshal %s into Go value of type %s",
                 json_kind(r->json), gotype);
        if (oai)
            req_error_oai(r, 400, "invalid_request_error", msg, 0);
        else
            req_error(r, 400, msg);
        return NULL;
    }
    return r->json;
}

int json_field(struct sim_req *r, const cJSON *obj, const char *key, int type, const char *gotype,
               const char *gofieldtype, int oai, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 1;
    int ok = (type == cJSON_True) ? cJSON_IsBool(v) : (v->type & 0xFF) == type;
    if (ok) {
        *out = v;
        return 1;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "json: cannot unmarshal %s into Go struct field %s.%s of type %s",
             json_kind(v), gotype, key, gofieldtype);
    if (oai)
        req_error_oai(r, 400, "invalid_request_error", msg, 0);
    else
        req_error(r, 400, msg);
    return 0;
}

const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- Go's field matching: case-insensitive keys, the last one wins ---- */

/* Go's encoding/json matches an object key to a struct field by its tag,
 * exactly first, else case-insensitively (foldName: ASCII case, and U+017F
 * 'ſ' and U+212A KELVIN SIGN, which fold to 's' and 'k'); every tag of the
 * request types is lower-case, so folding a key to lower case names its
 * field. Rewrites key in place (the result is never longer). */
static void fold_key(char *k)
{
    char *w = k;
    for (const unsigned char *p = (const unsigned char *)k; *p;) {
        if (p[0] == 0xC5 && p[1] == 0xBF) {
            *w++ = 's';
            p += 2;
        } else if (p[0] == 0xE2 && p[1] == 0x84 && p[2] == 0xAA) {
            *w++ = 'k';
            p += 3;
        } else {
            *w++ = (char)tolower(*p++);
        }
    }
    *w = 0;
}

/* Fields of the request types that are plain Go strings, numbers or bools:
 * a JSON null "has no effect" on them (encoding/json), so an earlier value
 * of the same field survives a later null. Pointers, slices, maps and
 * interfaces (stream, keep_alive, options, messages, input, think, ...) are
 * set to nil by a null, like any later value. */
static int plain_field(const char *k)
{
    static const char *const PLAIN[] = {
        "model", "name",     "prompt",   "suffix",    "system",       "template",
        "raw",   "role",     "content",  "thinking",  "source",       "destination",
        "from",  "quantize", "insecure", "verbose",   "dimensions",   "encoding_format",
        "user",  "username", "password", "tool_name", "tool_call_id", "include_usage",
    };
    for (size_t i = 0; i < sizeof PLAIN / sizeof PLAIN[0]; i++)
        if (strcmp(k, PLAIN[i]) == 0)
            return 1;
    return 0;
}

struct key_ref {
    cJSON *item;
    size_t pos;
};

static int cmp_key_ref(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int c = strcmp(x->item->string, y->item->string);
    if (c)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Leaves one member per key, as decoding into a struct (is_struct: keys
 * folded, null keeps a plain field's earlier value) or into a map (exact
 * keys) would: the last one. Sorting keeps it O(n log n) for hostile bodies. */
static void dedupe(cJSON *obj, int is_struct)
{
    size_t n = 0;
    for (cJSON *it = obj->child; it; it = it->next) {
        if (is_struct && it->string && !(it->type & cJSON_StringIsConst))
            fold_key(it->string);
        n++;
    }
    if (n < 2)
        return;
    struct key_ref stack[32];
    struct key_ref *v = n <= 32 ? stack : malloc(n * sizeof *v);
    if (!v)
        return; /* keeps cJSON's first-wins lookups: only under memory exhaustion */
    size_t i = 0;
    for (cJSON *it = obj->child; it; it = it->next, i++) {
        v[i].item = it;
        v[i].pos = i;
    }
    qsort(v, n, sizeof *v, cmp_key_ref);
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && strcmp(v[a].item->string, v[b].item->string) == 0)
            b++;
        if (b - a > 1) {
            size_t keep = b - 1;
            if (is_struct && plain_field(v[a].item->string))
                while (keep > a && cJSON_IsNull(v[keep].item))
                    keep--;
            for (size_t k = a; k < b; k++)
                if (k != keep)
                    cJSON_Delete(cJSON_DetachItemViaPointer(obj, v[k].item));
        }
        a = b;
    }
    if (v != stack)
        free(v);
}

void go_json_fold(cJSON *root)
{
    if (!cJSON_IsObject(root))
        return;
    dedupe(root, 1);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "options");
    if (cJSON_IsObject(o))
        dedupe(o, 0); /* map[string]any */
    cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (cJSON_IsObject(so))
        dedupe(so, 1);
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        if (!cJSON_IsObject(m))
            continue;
        dedupe(m, 1);
        /* api.Message's UnmarshalJSON lower-cases the role. */
        cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role))
            for (char *p = role->valuestring; *p; p++)
                *p = (char)tolower((unsigned char)*p);
    }
}
