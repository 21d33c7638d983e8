/*
 * json_scan.h - strict, allocation-free JSON validation and member lookup.
 *
 * The daemon forwards request bodies unchanged, so it never needs a DOM: it
 * needs to know that a body is one well-formed JSON document (so garbage is
 * refused here rather than by a backend after a slot was spent on it) and
 * where a few top-level members are (`model`, `stream`, `options`, ...).
 * sol_json_scan_object() does both in one linear pass; the other functions
 * then look inside the spans it reported.
 *
 * What a caller may rely on:
 *  - Nothing allocates (except sol_json_number_double() for numbers of 128+
 *    bytes), keeps state between calls or recurses: nesting is tracked with
 *    a bit stack of SOL_JSON_DEPTH_LIMIT bits on the C stack, so hostile
 *    input cannot exhaust memory or stack. All functions are reentrant.
 *  - Cost is one pass over the bytes; inside strings, runs of plain ASCII are
 *    skipped 16 bytes at a time (SSE2; 8 with the portable fallback). A 1 MiB
 *    English or code prompt scans in roughly 150-300 us on a current x86-64
 *    server; text in non-Latin scripts takes about twice that.
 *  - No function reads outside the buffer or span it was given; buffers need
 *    not be NUL-terminated.
 *  - Spans point into the caller's buffer and are valid as long as it is.
 *  - The validator follows RFC 8259 strictly (details at
 *    sol_json_scan_object()); decoding follows Go's encoding/json, which is
 *    what Ollama uses, so the router reads the same values the backend will.
 *  - The span helpers (object_get, object_next, array_next, key_equals,
 *    string_decode, number_*) expect spans produced by this module from a
 *    document that passed sol_json_scan_object(). Given other bytes they
 *    still stay in bounds, but their answers are unspecified.
 */
#ifndef SOLLOL_JSON_SCAN_H
#define SOLLOL_JSON_SCAN_H

#include <stddef.h>

enum sol_json_type {
    SOL_JSON_NULL,
    SOL_JSON_FALSE,
    SOL_JSON_TRUE,
    SOL_JSON_NUMBER,
    SOL_JSON_STRING,
    SOL_JSON_ARRAY,
    SOL_JSON_OBJECT
};

/* The raw text of one value: quotes of a string and brackets of an array or
 * object are included, surrounding whitespace is not. */
struct sol_json_span {
    const char *p;
    size_t len;
    enum sol_json_type type;
};

/* Return codes of sol_json_scan_object(). Callbacks should return positive
 * values to stop a scan, so they cannot be mistaken for these. */
#define SOL_JSON_OK         0
#define SOL_JSON_EINVAL     -1 /* not valid JSON; err says why and at which offset */
#define SOL_JSON_ENOTOBJECT -2 /* valid JSON, but the top-level value is not an object */
#define SOL_JSON_EDEPTH     -3 /* arrays/objects nested deeper than max_depth */

/* Largest usable max_depth: the bit stack costs SOL_JSON_DEPTH_LIMIT / 8
 * bytes of C stack. Go and cJSON stop at 10000 and 1000 levels. */
#define SOL_JSON_DEPTH_LIMIT 4096

/*
 * Called once per top-level member. `key` is the raw key (quotes and escapes
 * included: compare it with sol_json_key_equals()), `value` the raw value.
 * A nonzero return stops the scan and becomes its return value.
 */
typedef int (*sol_json_member_cb)(void *ud, const struct sol_json_span *key,
                                  const struct sol_json_span *value);

/*
 * Validates buf[0..len) as exactly one JSON value and, if it is an object,
 * reports its top-level members to cb (which may be NULL) in document order.
 *
 * Accepted, per RFC 8259: one value with optional space, tab, CR, LF around
 * it and nothing else (no BOM, no comments, no trailing commas, no NaN).
 * Strings must be valid UTF-8 (overlong forms, UTF-8-encoded surrogates and
 * code points above U+10FFFF are refused; Go would silently turn them into
 * U+FFFD) and must not contain raw bytes below 0x20. Escapes are the eight
 * one-letter ones and \u with exactly four hex digits. A \u escape of a lone
 * UTF-16 surrogate ("\ud800") IS accepted, because Go's encoding/json accepts
 * it (decoding it as U+FFFD) and refusing a body the backend takes would be
 * a needless incompatibility; sol_json_string_decode() does the same.
 * Numbers follow the JSON grammar exactly (no "01", "1.", ".5", "+1", "1e");
 * their magnitude is not checked here.
 *
 * max_depth bounds the nesting of arrays and objects, the top-level object
 * counting as 1; values below 1 act as 1, above SOL_JSON_DEPTH_LIMIT as the
 * limit.
 *
 * Members are reported while the scan runs, before the rest of the document
 * has been checked: whatever cb collected must be thrown away unless the
 * call returns SOL_JSON_OK. Duplicate keys are all reported; Go keeps the
 * last one, so a router that wants to agree with the backend should too.
 *
 * Returns SOL_JSON_OK, a SOL_JSON_E* code, or cb's nonzero return value.
 * When errlen > 0, err receives a one-line message (cut to fit) for the E*
 * codes and "" otherwise. EINVAL and EDEPTH messages start with "invalid
 * JSON: " and end with the byte offset, e.g. "invalid JSON: unexpected
 * character 'x' at offset 12"; ENOTOBJECT's names the type found.
 */
int sol_json_scan_object(const char *buf, size_t len, int max_depth, sol_json_member_cb cb,
                         void *ud, char *err, size_t errlen);

/*
 * Nonzero when the decoded raw key equals the NUL-terminated `name` byte for
 * byte ("mod\u0065l" equals "model"). A key containing \u0000 never equals
 * any name. Keys without escapes cost one memcmp.
 */
int sol_json_key_equals(const struct sol_json_span *key, const char *name);

/*
 * Like sol_json_key_equals() but with the case folding Go's encoding/json
 * applies when it matches keys to struct fields: "MODEL" and "Model" also
 * fill Ollama's `model` field, so a router that only matched exactly could
 * route on one value while the backend uses another. For an ASCII `name`
 * this is exactly Go's rule: ASCII letters fold, and U+212A (Kelvin sign)
 * and U+017F (long s) match 'k' and 's'. Non-ASCII names match exactly.
 */
int sol_json_key_equals_fold(const struct sol_json_span *key, const char *name);

/*
 * Decodes a string span into out as UTF-8 and NUL-terminates it. Escapes
 * are resolved as Go does: \u surrogate pairs combine into one code point,
 * a lone surrogate becomes U+FFFD. The decoded text is never longer than the
 * raw text, so outlen >= s->len - 1 always suffices. It may contain NUL bytes
 * (from \u0000): use the returned length, not strlen.
 * Returns the decoded length, or -1 if out is too small or s is not a string.
 */
long sol_json_string_decode(const struct sol_json_span *s, char *out, size_t outlen);

/*
 * Finds member `name` (exact match, sol_json_key_equals) among the direct
 * members of an object span. If the key occurs more than once the LAST
 * occurrence is returned, because that is the one Go keeps.
 * Returns 1 and fills *value, or 0 if absent or obj is not an object.
 */
int sol_json_object_get(const struct sol_json_span *obj, const char *name,
                        struct sol_json_span *value);

/*
 * Iterates the members of an object span. *pos must be 0 on the first call
 * and is then owned by the iterator. Returns 1 with *key and *value filled,
 * 0 after the last member (or if obj is not an object).
 */
int sol_json_object_next(const struct sol_json_span *obj, size_t *pos, struct sol_json_span *key,
                         struct sol_json_span *value);

/*
 * Iterates the elements of an array span, like sol_json_object_next().
 * Returns 1 with *elem filled, 0 after the last element.
 */
int sol_json_array_next(const struct sol_json_span *arr, size_t *pos, struct sol_json_span *elem);

/*
 * Converts a number span to a double (correctly rounded, via strtod in the
 * "C" locale, which the daemon never changes). Magnitudes that overflow a
 * double are refused, as Go refuses them; underflow yields 0 or a
 * subnormal, as in Go. Returns 0, or -1 if n is not a JSON number or
 * overflows.
 */
int sol_json_number_double(const struct sol_json_span *n, double *out);

/*
 * Converts a number span to a long long. Only integers written without a
 * fraction or exponent are accepted ("5" yes; "5.0", "5e0" no), as Go does
 * for integer fields. Returns 0, or -1 if n is not such a number or does not
 * fit in 64 bits.
 */
int sol_json_number_int64(const struct sol_json_span *n, long long *out);

/*
 * Decodes the one escape sequence at p (p[0] == '\\', at most end - p bytes
 * readable) to UTF-8 in out (1 to 4 bytes, count in *outlen), as Go does:
 * a surrogate pair combines, a lone surrogate becomes U+FFFD. Returns the
 * bytes consumed (2, 6 or 12), or 0 when the escape is malformed (out is
 * then untouched). For code that walks string spans itself (affinity keys).
 */
int sol_json_decode_escape(const char *p, const char *end, unsigned char out[4], int *outlen);

#endif
