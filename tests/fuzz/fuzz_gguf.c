/*
 * libFuzzer target for the GGUF header reader (gguf.c) and the RPC reply
 * codec (rpc_codec.c): untrusted bytes from a file and from a socket.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc/daemon -D_GNU_SOURCE \
 *       src/daemon/base/gguf.c src/daemon/base/rpc_codec.c tests/fuzz/fuzz_gguf.c -o fuzz_gguf
 *   ./fuzz_gguf -max_total_time=60 CORPUS_COPY tests/fuzz/corpus/gguf
 *
 * The input is written to a memfd and read as a GGUF file; an accepted file
 * must have an architecture and a block count, and every error names the
 * path. The same bytes are framed as RPC replies of every size the probe
 * expects: never more consumed than given.
 */
#include "base/gguf.h"

#include "fuzz_util.h"
#include "base/rpc_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0)
        fd = memfd_create("gguf", 0);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 0) == 0);
    REQUIRE(pwrite(fd, data, size, 0) == (ssize_t)size);
    struct sol_gguf_info g;
    char err[512] = "";
    int rc = sol_gguf_read_fd(fd, size, "/fuzz.gguf", &g, err, sizeof err);
    if (rc == 0) {
        REQUIRE(g.architecture[0] != '\0');
        REQUIRE(g.block_count > 0);
        REQUIRE(g.version >= 1 && g.version <= 3);
    } else {
        REQUIRE(rc == -1);
        REQUIRE(strncmp(err, "/fuzz.gguf: ", 12) == 0);
    }
    static const size_t expect[] = {3, 4, 16, 28};
    for (size_t i = 0; i < 4; i++) {
        const unsigned char *pl = NULL;
        long k = sol_rpc_frame_reply(data, size, expect[i], &pl);
        REQUIRE(k >= -1 && k <= (long)size);
        if (k > 0) {
            REQUIRE((size_t)k == 8 + expect[i] && pl == data + 8);
            struct sol_rpc_version v;
            uint32_t c;
            uint64_t f, t;
            if (expect[i] == 3 || expect[i] == 28)
                REQUIRE(sol_rpc_decode_hello(pl, expect[i], expect[i] == 28, &v) == 0);
            if (expect[i] == 4)
                REQUIRE(sol_rpc_decode_device_count(pl, 4, &c) == 0);
            if (expect[i] == 16)
                REQUIRE(sol_rpc_decode_device_memory(pl, 16, &f, &t) == 0);
        }
    }
    return 0;
}
