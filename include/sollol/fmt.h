/*
 * fmt.h - number and string formatting for the per-request path.
 *
 * snprintf() parses its format string and goes through stdio's machinery
 * on every call: about 800-2,000 instructions for an id or a "12.3". A
 * small proxied request formatted a dozen such values (request id, queue
 * time, Server-Timing, header lines), some 13,000 instructions of its
 * ~176,000 (bench/profile). These write the same text directly.
 *
 * Every function writes a NUL after what it wrote and returns the length
 * written, without the NUL. Buffers are sized by the caller as stated.
 */
#ifndef SOLLOL_FMT_H
#define SOLLOL_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Largest text sol_fmt_u64() writes, NUL included. */
#define SOL_FMT_U64_MAX 21

/* Decimal `v` into out (at least SOL_FMT_U64_MAX bytes): what "%llu" gives. */
size_t sol_fmt_u64(char *out, uint64_t v);

/* `v` as lower-case hex, zero-padded to at least `width` digits (at most
 * 16), into out (at least 17 bytes): what "%0*llx" gives. */
size_t sol_fmt_hex(char *out, uint64_t v, unsigned width);

/* `v` with one decimal, rounded half away from zero, into out (at least
 * 32 bytes): what "%.1f" gives for 0 <= v < 1e15 (the durations in ms
 * this is for); other values (negative, NaN, huge) fall back to
 * snprintf so the text is always what "%.1f" would print (cut to 31
 * characters: above 1e29). */
size_t sol_fmt_fixed1(char *out, double v);

/* Copies at most size-1 bytes of src into dst (size > 0) and ends it with
 * a NUL: what snprintf(dst, size, "%s", src) gives. Returns the bytes
 * copied. */
size_t sol_copy(char *dst, size_t size, const char *src);

/* Appends at most size-1-pos bytes of the n bytes at src to dst at pos
 * (pos < size) and a NUL; returns the new position. For assembling
 * "a: b" lines without a format string. */
size_t sol_cat(char *dst, size_t size, size_t pos, const char *src, size_t n);

#endif
