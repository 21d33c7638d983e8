/*
 * buf.h - a growable byte buffer with a consumed prefix.
 *
 * Used for request bodies, stream buffers between a node and a client, and
 * building small JSON documents. `off` marks bytes already consumed from the
 * front, so a stream can be drained without moving memory on every read;
 * the data is compacted only when space is needed.
 *
 * All functions return 0 on success and -1 when memory runs out (the buffer
 * is then unchanged).
 */
#ifndef SOLLOL_BUF_H
#define SOLLOL_BUF_H

#include <stddef.h>

struct sol_buf {
    char *data;
    size_t len; /* bytes stored, including the consumed prefix */
    size_t off; /* bytes consumed from the front */
    size_t cap;
};

/* Bytes not yet consumed. */
static inline size_t sol_buf_pending(const struct sol_buf *b)
{
    return b->len - b->off;
}

/* Makes room for `more` bytes after the data (compacting first). */
int sol_buf_reserve(struct sol_buf *b, size_t more);
int sol_buf_append(struct sol_buf *b, const void *p, size_t n);
int sol_buf_append_str(struct sol_buf *b, const char *s);
int sol_buf_appendf(struct sol_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a JSON string literal, quotes included. Invalid UTF-8 is
 * replaced by U+FFFD so the output is always valid JSON. */
int sol_buf_append_json_string(struct sol_buf *b, const char *s, size_t n);
/* Marks n pending bytes consumed; resets to empty when all are. */
void sol_buf_consume(struct sol_buf *b, size_t n);
/* Keeps the allocation, drops the data. */
void sol_buf_clear(struct sol_buf *b);
void sol_buf_free(struct sol_buf *b);
/* Ensures a NUL after the data (not counted in len) and returns data. */
const char *sol_buf_cstr(struct sol_buf *b);

#endif
