/*
 * inspect.h - reads what routing needs from a request body, once.
 *
 * The body is validated as strict JSON in one linear pass without building
 * a tree (a 1 MiB prompt must not cost a DOM), and the few top-level
 * members routing uses are located. The body itself is forwarded unchanged.
 */
#ifndef SOLLOL_INSPECT_H
#define SOLLOL_INSPECT_H

#include "sollol/json_scan.h"
#include "base/node-t.h"

#include <stddef.h>

struct sol_body_info {
    char model[SOL_MODEL_NAME_MAX]; /* decoded "model" string; "" when absent */
    int stream;                     /* 1/0 as sent; -1 when absent */
    long long num_predict;          /* options.num_predict; -1 when absent */
    int priority;                   /* "priority" 1-10 (sollol's extension); -1 when absent */
    struct sol_json_span options;   /* "options" object; p == NULL when absent */
    struct sol_json_span messages;  /* "messages" array; p == NULL when absent */
    struct sol_json_span prompt;    /* "prompt" string; p == NULL when absent */
    struct sol_json_span input;     /* "input" (embed); p == NULL when absent */
    struct sol_json_span keep_alive;
};

/* Bits of sol_inspect_body()'s `needs_model` (1 alone keeps its old meaning). */
#define SOL_INSPECT_NEEDS_MODEL 1 /* no model: 400 "model is required" */
#define SOL_INSPECT_NAME_ALIAS                                                                     \
    2 /* "name" stands for an absent or empty "model" (Ollama's                                    \
         deprecated field of pull, push, show, delete, create) */

/*
 * Inspects `body` for a route with `needs_model` (SOL_INSPECT_* bits). Returns 0, or the HTTP
 * status to answer (400) with a message in err, worded as Ollama words it:
 * "missing request body", "invalid JSON: ...", "model is required",
 * "model must be a string", "duplicate key \"model\"". `max_depth` bounds
 * JSON nesting.
 */
int sol_inspect_body(const char *body, size_t len, int needs_model, int max_depth,
                     struct sol_body_info *out, char *err, size_t errlen);

/* Effective stream flag: as sent, else the route's default. */
static inline int sol_body_streams(const struct sol_body_info *bi, int default_stream)
{
    return bi->stream >= 0 ? bi->stream : default_stream;
}

#endif
