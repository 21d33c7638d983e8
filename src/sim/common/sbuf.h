/*
 * sbuf.h - the simulators' growable byte buffer and JSON string literals.
 *
 * Shared by ollama-sim and the llama-server stand-in (src/sim/common). A
 * simulator has no better answer to running out of memory than stopping,
 * so nothing here fails: allocation failure aborts the process.
 *
 * Invariant: after any sb_* append, p[len] is a NUL (not counted in len),
 * so a buffer that holds text can be read as a C string. Setting len to 0
 * by hand empties a buffer but keeps its allocation (use sb_cstr() then).
 */
#ifndef SOLLOL_SIM_SBUF_H
#define SOLLOL_SIM_SBUF_H

#include <stddef.h>
#include <stdint.h>

struct sbuf {
    char *p; /* NULL until the first append */
    size_t len;
    size_t cap;
};

/* Makes room for `extra` more bytes plus the terminating NUL. */
void sb_reserve(struct sbuf *b, size_t extra);
/* Appends n bytes (d may be anything when n is 0). */
void sb_put(struct sbuf *b, const void *d, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_putc(struct sbuf *b, char c);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_i64(struct sbuf *b, int64_t v);
void sb_u64(struct sbuf *b, uint64_t v);
/* A JSON string literal, escaped exactly as Go's encoding/json does (HTML-safe
 * <, >, & and U+2028/9 escapes; invalid UTF-8 becomes "\ufffd"): what Ollama
 * writes. */
void sb_json_strn(struct sbuf *b, const char *s, size_t n);
/* sb_json_strn of a C string; NULL is written as "". */
void sb_json_str(struct sbuf *b, const char *s);
/* A JSON string literal with only the escapes JSON requires (quote,
 * backslash, control characters; invalid UTF-8 becomes a raw U+FFFD), as
 * llama.cpp's server writes it. Same bytes as sol_buf_append_json_string. */
void sb_json_plain(struct sbuf *b, const char *s, size_t n);
/* The data as a C string: "" for an empty buffer, never NULL. */
const char *sb_cstr(struct sbuf *b);
/* Releases the allocation; the buffer is empty and reusable afterwards. */
void sb_free(struct sbuf *b);
/* strlcpy: copies what fits, always terminated (truncation is intended). */
void str_copy(char *dst, size_t n, const char *src);

#endif
