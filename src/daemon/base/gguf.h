/*
 * gguf.h - validation of a GGUF file's header before llama-server is
 * launched on it (PROTOCOLS.md section 5).
 *
 * The header comes from an untrusted file: every length and count is
 * bounded by the file's size before anything is read or allocated, so a
 * truncated or hostile file is an error, never a crash or a huge
 * allocation. Reads are plain blocking pread() calls: callers on the loop
 * run them in a uv_work item (coordinator.c does).
 */
#ifndef SOLLOL_GGUF_H
#define SOLLOL_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* What the coordinator needs from a GGUF header. Strings are NUL-terminated
 * (truncated to fit); numbers are 0 / -1 when the key is absent. */
struct sol_gguf_info {
    uint32_t version; /* 1..3 */
    uint64_t tensor_count;
    uint64_t kv_count;
    uint64_t file_size;
    char architecture[64];     /* general.architecture (required) */
    char name[128];            /* general.name ("" when absent) */
    int64_t file_type;         /* general.file_type, -1 when absent */
    uint64_t block_count;      /* <arch>.block_count (required, > 0) */
    uint64_t context_length;   /* <arch>.context_length, 0 when absent */
    uint64_t embedding_length; /* <arch>.embedding_length, 0 when absent */
};

/*
 * Reads and validates the header of the GGUF file open on `fd`, whose size
 * is `size` bytes: magic "GGUF", version 1..3, every key/value (skipping
 * values it does not need, arrays of strings included), then the required
 * keys. `path` only names the file in messages. Returns 0 with *out filled,
 * or -1 with a one-line message naming the path and what is wrong in err
 * ("/m.gguf: not a GGUF file (bad magic)"). Never allocates.
 */
int sol_gguf_read_fd(int fd, uint64_t size, const char *path, struct sol_gguf_info *out, char *err,
                     size_t errlen);

/* Opens `path` and calls sol_gguf_read_fd(). Same contract; a file that
 * cannot be opened is an error naming the path and errno's text. */
int sol_gguf_read_file(const char *path, struct sol_gguf_info *out, char *err, size_t errlen);

/* Name of a general.file_type value ("Q4_K_M"), or "unknown". */
const char *sol_gguf_file_type_name(int64_t file_type);

#endif
