/*
 * hdr_check.h - what a client's request line and header block must look
 * like before anything of it is judged or forwarded, and which headers of a
 * node's answer reach the client. Pure functions (no state, no allocation,
 * no clock): unit tested in tests/unit/test_hdr_check.c and fuzzed in
 * tests/fuzz/fuzz_hdr_check.c. See docs/security.md, "Request targets and
 * header hygiene".
 *
 * Why it exists: access control judges the path libmicrohttpd decoded,
 * while a node would see whatever the daemon builds from it. A path with
 * dot segments, encoded separators or NUL ("/v1/%2e%2e/api/copy") means one
 * thing to the route table and another to libcurl or the node. Only paths
 * that are their own normal form are accepted, so both see the same string.
 */
#ifndef SOLLOL_HDR_CHECK_H
#define SOLLOL_HDR_CHECK_H

#include <stddef.h>

/*
 * Checks a raw request target (as it came on the request line, query
 * included, not decoded) and decodes its path. Accepted when:
 *  - it starts with '/' (origin form);
 *  - every path byte is an RFC 3986 pchar or '/', literally or as a
 *    well-formed %XX escape; an escape may only encode a byte that needs
 *    none (unreserved, sub-delims, ':' or '@'): an encoded '/', '?', '#',
 *    '%', '\', NUL, space, control or non-ASCII byte is refused;
 *  - no segment is empty, "." or ".." after decoding (only "/" itself);
 *  - the query has no control byte, space, '#' or %00, and its escapes are
 *    well formed.
 * Returns the decoded path's length (written to out, NUL-terminated, when
 * out is not NULL and cap is large enough), or -1 with *why (a static
 * message) set. An accepted decoded path is accepted again unchanged (it is
 * its own normal form): it has no '%', no dot or empty segment.
 */
long sol_target_check(const char *raw, size_t len, char *out, size_t cap, const char **why);

/* One header field as libmicrohttpd 0.9.75 hands it over: pointers into its
 * connection buffer, in arrival order. */
struct sol_hdr_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * Checks a request's header fields (RFC 9110/9112). Returns 0 when they may
 * be used, else the status to answer (400, or 501 for a transfer coding the
 * daemon does not implement) with a message in msg:
 *  - a name that is not a token (a space or tab before the colon stays in
 *    the name libmicrohttpd reports), or a value with a control byte other
 *    than tab (a bare CR) -> 400;
 *  - Transfer-Encoding (all fields, as one list): "chunked" alone is fine;
 *    chunked not last ("identity", "xchunked", "chunked, identity"), twice,
 *    or an empty list -> 400; other codings before a final chunked
 *    ("gzip, chunked") -> 501;
 *  - Content-Length fields that differ -> 400.
 * With `layout`, also what libmicrohttpd 0.9.75 leaves only in its buffer
 * layout (it parses in place): each value must follow its own name on the
 * same line, and each field must start right after the previous one's line
 * end. An obs-fold continuation (0.9.75 moves the name elsewhere and glues
 * the continuation to it) and a NUL inside a value (0.9.75 cuts the value
 * there) break that -> 400. A NUL in the very last field cannot be seen.
 */
unsigned sol_hdr_check_request(const struct sol_hdr_field *f, size_t n, int layout, char *msg,
                               size_t msglen);

/* Whether `name` (len bytes) is one of the comma-separated tokens in
 * `list` (a Connection header's value), case-insensitively. */
int sol_hdr_list_has(const char *list, size_t list_len, const char *name, size_t len);

/*
 * What becomes of a node's response header (name, value as received):
 * 0 drop, 1 forward. Dropped: hop-by-hop fields and those the daemon's own
 * server sets, Set-Cookie and Set-Cookie2 (a node cannot set cookies on the
 * daemon's origin), WWW-Authenticate and Proxy-Authenticate (they
 * challenge for the node's credentials, which the client neither has nor
 * should send), and a Location that is not a path the daemon itself would
 * accept (an absolute URL would point the client at the node, past access
 * control). Fields named in the node's Connection header are dropped by
 * the caller (sol_hdr_list_has) once the whole header block is in.
 */
int sol_hdr_response_keep(const char *name, size_t name_len, const char *value, size_t value_len);

/* Node response header blocks larger than this (all lines, status line
 * included) are a node fault: libmicrohttpd could not send them on. */
#define SOL_NODE_HEADER_MAX (8 * 1024)

#endif
