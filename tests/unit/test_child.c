/*
 * Unit test of child.c's pure part: which output line of a llama.cpp
 * program names the cause of its exit (issue 16: a crash-loop 503 quoted
 * gdb frames instead of it). Lines as the real programs print them.
 */
#include "nodes/child.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static const char *cause(const char *const *lines, unsigned n)
{
    const char *c = sol_child_cause_line(lines, n);
    return c ? c : "";
}

static void test_cause_lines(void)
{
    /* llama-server losing an RPC backend (GGML_NO_BACKTRACE=1: no frames). */
    const char *abort_rpc[] = {
        "srv  update_slots: all slots are idle",
        ("/src/ggml/src/ggml-rpc/ggml-rpc.cpp:627: Remote RPC server crashed or returned "
         "malformed response"),
        "",
    };
    CHECK(strstr(cause(abort_rpc, 3), "ggml-rpc.cpp:627") != NULL, "ggml-rpc.cpp line");
    /* An unknown flag. */
    const char *bad_flag[] = {"error: invalid argument: --no-such-flag"};
    CHECK(strcmp(cause(bad_flag, 1), bad_flag[0]) == 0, "error: line");
    const char *rpc_m[] = {"error: unknown argument: -m", "Usage: ggml-rpc-server [options]",
                           "options:", "  -h, --help   show this help message and exit"};
    CHECK(strcmp(cause(rpc_m, 4), rpc_m[0]) == 0, "the error before the usage");
    /* llama.cpp's log with prefixes: "... E ..." */
    const char *prefixed[] = {"0.01.234.567 I main: loading",
                              ("0.01.300.000 E llama_model_load: error loading model")};
    CHECK(strcmp(cause(prefixed, 2), prefixed[1]) == 0, "E with a prefix");
    const char *assert_line[] = {"x", "/src/ggml.c:123: GGML_ASSERT(n > 0) failed", "y"};
    CHECK(strcmp(cause(assert_line, 3), assert_line[1]) == 0, "GGML_ASSERT");
    /* The last cause wins; nothing matches: NULL. */
    const char *two[] = {"error: first", "E second"};
    CHECK(strcmp(cause(two, 2), "E second") == 0, "last one");
    /* The abort's own line wins over the log thread's E lines, whatever
     * their order. */
    const char *order[] = {"/src/ggml/src/ggml-rpc/ggml-rpc.cpp:519: Remote RPC server crashed",
                           "0.00.961.835 E send failed (bytes_sent=0, size_to_send=8)"};
    CHECK(strcmp(cause(order, 2), order[0]) == 0, "abort site first");
    const char *not_site[] = {"E real cause", "loading model.cpp from disk: 3 files"};
    CHECK(strcmp(cause(not_site, 2), "E real cause") == 0, "a .cpp word is not a site");
    const char *none[] = {"main: server is listening on http://127.0.0.1:8080", "Eager loading",
                          "load_tensors: offloaded 5/5 layers to GPU"};
    CHECK(sol_child_cause_line(none, 3) == NULL, "no cause");
    CHECK(sol_child_cause_line(none, 0) == NULL, "no lines");
}

int main(void)
{
    test_cause_lines();
    return check_summary();
}
