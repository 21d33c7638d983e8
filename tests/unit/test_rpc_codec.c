/*
 * test_rpc_codec.c - the ggml RPC messages of the pre-flight: both HELLO
 * forms byte for byte, DEVICE_COUNT and GET_DEVICE_MEMORY (with and without
 * the device argument), reply framing (partial input, wrong sizes), the
 * version rule and version strings. Also feeds every prefix and random
 * bytes to the decoders: bounded, never past the input.
 */
#include "check.h"

#include "base/rpc_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_encode(void)
{
    unsigned char b[SOL_RPC_REQ_MAX];
    size_t n = sol_rpc_encode_hello(b, 1);
    CHECK(n == 33, "v4 hello is %zu bytes", n);
    CHECK(b[0] == 14 && b[1] == 24, "cmd 14, size 24");
    for (int i = 2; i < 33; i++)
        CHECK(b[i] == 0, "byte %d is 0", i);
    n = sol_rpc_encode_hello(b, 0);
    CHECK(n == 9 && b[0] == 14, "empty hello is 9 bytes");
    for (int i = 1; i < 9; i++)
        CHECK(b[i] == 0, "size byte %d is 0", i);
    n = sol_rpc_encode_device_count(b);
    CHECK(n == 9 && b[0] == 15 && b[1] == 0, "device count");
    n = sol_rpc_encode_device_memory(b, 0x01020304, 3);
    CHECK(n == 13 && b[0] == 11 && b[1] == 4 && b[9] == 4 && b[10] == 3 && b[11] == 2 && b[12] == 1,
          "memory with u32 device, little-endian");
    n = sol_rpc_encode_device_memory(b, 5, 2);
    CHECK(n == 9 && b[0] == 11 && b[1] == 0, "memory before protocol 3: empty");
}

static void test_decode(void)
{
    /* A v4 HELLO reply: 8-byte size 28, then 3.4.5, pad, caps. */
    unsigned char r[8 + 28] = {28, 0, 0, 0, 0, 0, 0, 0, 4, 1, 7, 0};
    const unsigned char *pl = NULL;
    for (size_t i = 0; i < sizeof r; i++)
        CHECK(sol_rpc_frame_reply(r, i, 28, &pl) == 0, "prefix %zu needs more", i);
    CHECK(sol_rpc_frame_reply(r, sizeof r, 28, &pl) == 36, "framed");
    struct sol_rpc_version v;
    CHECK(sol_rpc_decode_hello(pl, 28, 1, &v) == 0 && v.major == 4 && v.minor == 1 && v.patch == 7,
          "v4 version");
    CHECK(sol_rpc_frame_reply(r, sizeof r, 3, &pl) == -1, "a v4 reply is not the empty form's");
    unsigned char old[8 + 3] = {3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0};
    CHECK(sol_rpc_frame_reply(old, sizeof old, sol_rpc_hello_reply_size(0), &pl) == 11, "old");
    CHECK(sol_rpc_decode_hello(pl, 3, 0, &v) == 0 && v.major == 2 && v.minor == 0, "2.0.0");
    CHECK(sol_rpc_decode_hello(pl, 3, 1, &v) == -1, "size checked");
    unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(sol_rpc_frame_reply(huge, 8, 16, &pl) == -1, "absurd size is an error, not a wait");
    unsigned char cnt[12] = {4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0};
    uint32_t c;
    CHECK(sol_rpc_frame_reply(cnt, 12, 4, &pl) == 12 &&
              sol_rpc_decode_device_count(pl, 4, &c) == 0 && c == 3,
          "count");
    unsigned char mem[24] = {16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             1,  0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0};
    uint64_t f, t;
    CHECK(sol_rpc_frame_reply(mem, 24, 16, &pl) == 24 &&
              sol_rpc_decode_device_memory(pl, 16, &f, &t) == 0 && f == (1ull << 32) &&
              t == (2ull << 32),
          "memory");
    CHECK(sol_rpc_decode_device_memory(pl, 15, &f, &t) == -1, "memory size checked");
    CHECK(sol_rpc_decode_device_count(pl, 8, &c) == -1, "count size checked");

    /* Random input: framing never claims more than it was given. */
    unsigned seed = 12345;
    unsigned char rnd[64];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 64);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            rnd[i] = (unsigned char)(seed >> 16);
        }
        if (round % 3 == 0 && len >= 8)
            memset(rnd + 1, 0, 7); /* small sizes happen too */
        size_t expect = (size_t)(round % 4 == 0   ? 28
                                 : round % 4 == 1 ? 3
                                 : round % 4 == 2 ? 4
                                                  : 16);
        long k = sol_rpc_frame_reply(rnd, len, expect, &pl);
        CHECK(k <= (long)len, "round %d consumed %ld of %zu", round, k, len);
        if (k > 0)
            CHECK(pl == rnd + 8 && (size_t)k == 8 + expect, "round %d payload", round);
    }
}

static void test_versions(void)
{
    struct sol_rpc_version ref = {3, 0, 0}, v;
    char why[200];
    v = (struct sol_rpc_version){3, 0, 9};
    CHECK(sol_rpc_version_compatible(&ref, &v, why, sizeof why) == 1, "patch differs: fine");
    v = (struct sol_rpc_version){2, 0, 0};
    CHECK(sol_rpc_version_compatible(&ref, &v, why, sizeof why) == 0 &&
              strstr(why, "major differs") && strstr(why, "2.0.0") && strstr(why, "3.0"),
          "%s", why);
    v = (struct sol_rpc_version){3, 1, 0};
    CHECK(sol_rpc_version_compatible(&ref, &v, why, sizeof why) == 0 &&
              strstr(why, "minor differs"),
          "%s", why);
    CHECK(sol_rpc_version_parse("v3.0.1", &v) == 0 && v.major == 3 && v.patch == 1, "v3.0.1");
    CHECK(sol_rpc_version_parse("4.1", &v) == 0 && v.major == 4 && v.minor == 1 && v.patch == 0,
          "4.1");
    CHECK(sol_rpc_version_parse("4", &v) == -1, "major only");
    CHECK(sol_rpc_version_parse("4.x", &v) == -1, "junk");
    CHECK(sol_rpc_version_parse("4.1.2.3", &v) == -1, "four parts");
    CHECK(sol_rpc_version_parse("300.1", &v) == -1, "over a byte");
    CHECK(sol_rpc_version_parse("", &v) == -1 && sol_rpc_version_parse(NULL, &v) == -1, "empty");
}

/* The rpc_backends forms (rpc_codec.c's parser; config.c and coordinator.c use it). */
static void test_backends(void)
{
    struct sol_rpc_addr a[8];
    size_t n = 0;
    char err[256];
    CHECK(sol_rpc_parse_backends("[{\"host\":\"10.0.0.7\",\"port\":50053},\"10.0.0.8\","
                                 "\"[::1]:7\"]",
                                 a, 8, &n, err, sizeof err) == 0,
          "%s", err);
    CHECK(n == 3 && strcmp(a[0].host, "10.0.0.7") == 0 && a[0].port == 50053 &&
              a[1].port == 50052 && strcmp(a[2].host, "::1") == 0 && a[2].port == 7,
          "json forms");
    CHECK(sol_rpc_parse_backends("h1:1, h2 ,h1:1", a, 8, &n, err, sizeof err) == 0 && n == 2 &&
              a[1].port == 50052,
          "env form, duplicates merged");
    CHECK(sol_rpc_parse_backends("# workers\n10.0.0.1:50052\n\n10.0.0.2  # gpu box\n", a, 8, &n,
                                 err, sizeof err) == 0 &&
              n == 2 && strcmp(a[1].host, "10.0.0.2") == 0,
          "file form");
    CHECK(sol_rpc_parse_backends("[]", a, 8, &n, err, sizeof err) == 0 && n == 0, "empty");
    CHECK(sol_rpc_parse_backends("h:99999", a, 8, &n, err, sizeof err) == -1, "port range");
    CHECK(sol_rpc_parse_backends("[{\"port\":1}]", a, 8, &n, err, sizeof err) == -1, "no host");
    CHECK(sol_rpc_parse_backends("[3]", a, 8, &n, err, sizeof err) == -1, "number");
    CHECK(sol_rpc_parse_backends("bad host!:1", a, 8, &n, err, sizeof err) == -1, "bad host");
    CHECK(sol_rpc_parse_backends("[{\"host\":\"h\",\"port\":1.5}]", NULL, 0, NULL, err,
                                 sizeof err) == -1,
          "fractional port");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    test_encode();
    test_decode();
    test_versions();
    test_backends();
    return check_summary();
}
