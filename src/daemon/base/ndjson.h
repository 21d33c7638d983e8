/*
 * ndjson.h - reading what the daemon needs from a node's NDJSON answer
 * without buffering it: a line splitter for streams that are rewritten line
 * by line (fan-out progress), the last bytes of a streamed answer, and the
 * counters of Ollama's final metrics line read from those bytes.
 *
 * Everything here takes bytes a node sent, which may be anything: no
 * function reads outside the buffers it is given, and none needs its input
 * NUL-terminated. Pure functions except sol_ndjson_feed(), which only
 * touches the caller's `pending` buffer.
 */
#ifndef SOLLOL_NDJSON_H
#define SOLLOL_NDJSON_H

#include "sollol/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Called once per complete line, without its '\n'. `line` is valid only
 * during the call. */
typedef void (*sol_ndjson_line_cb)(void *ud, const char *line, size_t len);

/*
 * Feeds n bytes of a stream. Each line completed by a '\n' is passed to cb
 * (the part held in `pending` from earlier calls joined with the new part);
 * the unterminated rest is kept in `pending` for the next call.
 * Returns 0, or -1 when the unterminated rest would exceed `limit` bytes or
 * memory runs out: the stream should then be abandoned (lines already
 * passed to cb stay passed; `pending` is left as it was before the rest).
 */
int sol_ndjson_feed(struct sol_buf *pending, size_t limit, const char *p, size_t n,
                    sol_ndjson_line_cb cb, void *ud);

/* Passes what is left in `pending` (a last line without '\n') to cb, if
 * anything, and empties it. */
void sol_ndjson_finish(struct sol_buf *pending, sol_ndjson_line_cb cb, void *ud);

/*
 * Keeps the last `cap` bytes of a stream in tail[0..*tail_len): appends
 * p[0..n) and drops the oldest bytes beyond cap. *tail_len must start at 0
 * and never exceed cap.
 */
void sol_ndjson_tail_keep(char *tail, size_t *tail_len, size_t cap, const char *p, size_t n);

/*
 * Reads the unsigned integer after the LAST `"key":` in tail[0..len) (the
 * final metrics line of an Ollama answer ends the stream). Spaces between
 * the colon and the digits are skipped; at most 23 digits are read, and a
 * value beyond 64 bits saturates at UINT64_MAX. Returns 0 when the key is
 * absent or not followed by digits (a negative or non-numeric value).
 */
uint64_t sol_ndjson_tail_number(const char *tail, size_t len, const char *key);

/* What a fan-out progress line says (sol_ndjson_progress). */
struct sol_ndjson_progress {
    size_t start;  /* offset of the first byte that is not a space or tab */
    size_t len;    /* end of the line without trailing whitespace (CR, LF, space, tab);
                      len == start: a blank line, skip it */
    int is_object; /* line[start] is '{' and line[len - 1] is '}' */
    int success;   /* {"status":"success"} */
    int has_error; /* an "error" string member; its decoding is in error */
};

/*
 * Classifies one line of a /api/pull style progress stream. The line is not
 * validated as JSON (it is forwarded as the node wrote it); members are
 * looked up with the bounds-safe json_scan span helpers. `error` (errlen
 * bytes, >= 1) receives the decoded "error" string when there is one, cut
 * to fit, and is left untouched otherwise.
 */
void sol_ndjson_progress(const char *line, size_t len, struct sol_ndjson_progress *out, char *error,
                         size_t errlen);

#endif
