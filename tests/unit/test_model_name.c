/*
 * Unit test of model_name: canonical forms (defaults, case, hosts, schemes),
 * Ollama's validity rules, buffer bounds, aliasing, and the key hash.
 */
#include "base/model_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Canonicalises from an exact-size heap copy, so ASan sees any overread. */
static int canon(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    char *copy = malloc(n + 1);
    if (!copy)
        abort();
    memcpy(copy, in, n + 1);
    int rc = sol_model_canonical(copy, out, outlen);
    free(copy);
    return rc;
}

static const struct {
    const char *in, *want;
} valid[] = {
    {"llama3.2", "llama3.2:latest"},
    {"llama3.2:latest", "llama3.2:latest"},
    {"registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"},
    {"Llama3.2", "llama3.2:latest"},
    {"LLAMA3.2:3B", "llama3.2:3b"},
    {"hf.co/bartowski/Foo-GGUF:Q4_K_M", "hf.co/bartowski/foo-gguf:q4_k_m"},
    {"myns/model", "myns/model:latest"},
    {"registry.ollama.ai/myns/model:tag", "myns/model:tag"},
    {"library/llama3.2", "llama3.2:latest"},
    {"Library/llama3.2:3b", "llama3.2:3b"},
    {"REGISTRY.OLLAMA.AI/LIBRARY/Qwen2.5", "qwen2.5:latest"},
    {"example.com/library/m", "example.com/library/m:latest"},
    /* a ':' before the last '/' is a host port, not a tag */
    {"localhost:5000/ns/model", "localhost:5000/ns/model:latest"},
    {"localhost:5000/ns/model:v1", "localhost:5000/ns/model:v1"},
    /* Ollama drops a scheme from the host */
    {"https://hf.co/ns/m:q8_0", "hf.co/ns/m:q8_0"},
    {"http://registry.ollama.ai/library/m", "m:latest"},
    {"_private", "_private:latest"},
    {"nomic-embed-text:v1.5", "nomic-embed-text:v1.5"},
    {"a", "a:latest"},
    {"0:0", "0:0"},
    {"deepseek-r1:1.5b-qwen-distill-q4_K_M", "deepseek-r1:1.5b-qwen-distill-q4_k_m"},
};

static const char *const invalid[] = {
    "",
    "a//b",
    "//a",
    "/a",
    "a/",
    "ns/",
    "h/ns/",
    "model:",
    ":tag",
    ":",
    "/",
    "a b",
    " a",
    "a ",
    "a\tb",
    "a\nb",
    "a\x7f",
    "h/a/b/c",     /* 4 path parts */
    "h/n/skill/m", /* Ollama's 4-part kinds are not routable models */
    "a/b/c/d/e",
    "a:b:c",      /* ':' in the model part */
    "ns.x/model", /* '.' not allowed in a namespace */
    "-model",     /* first byte must be [A-Za-z0-9_] */
    ".model",
    "model:-tag",
    "model:.tag",
    "ns/-m",
    "-h/ns/m",
    "model@sha256:abc",
    "model+q4",
    "mo$del",
    "mödel",        /* non-ASCII */
    "model:ta/g",   /* a '/' after the ':' makes it a path, "g" model, "model:ta" ns */
    "http://model", /* a scheme without host/namespace */
    "h:/ns/m:",
};

static void test_valid(void)
{
    char out[SOL_MODEL_NAME_MAX];
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        int rc = canon(valid[i].in, out, sizeof out);
        CHECK(rc == 0, "canonical(\"%s\") = %d", valid[i].in, rc);
        CHECK(strcmp(out, valid[i].want) == 0, "canonical(\"%s\") = \"%s\", want \"%s\"",
              valid[i].in, out, valid[i].want);
        /* idempotent */
        char again[SOL_MODEL_NAME_MAX];
        rc = canon(out, again, sizeof again);
        CHECK(rc == 0 && strcmp(again, out) == 0, "canonical(\"%s\") = \"%s\" (rc %d)", out, again,
              rc);
    }
}

static void test_invalid(void)
{
    char out[SOL_MODEL_NAME_MAX];
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        strcpy(out, "junk");
        int rc = canon(invalid[i], out, sizeof out);
        CHECK(rc == -1, "canonical(\"%s\") = %d (\"%s\"), want -1", invalid[i], rc, out);
        CHECK(out[0] == '\0', "output not cleared for \"%s\": \"%s\"", invalid[i], out);
    }
    CHECK(sol_model_canonical(NULL, out, sizeof out) == -1, "NULL input");
    CHECK(sol_model_canonical("a", NULL, 10) == -1, "NULL output");
    CHECK(sol_model_canonical("a", out, 0) == -1, "zero-length output");
}

static void test_lengths(void)
{
    char in[2048], out[SOL_MODEL_NAME_MAX];

    /* model and tag: 80 bytes is the limit */
    memset(in, 'm', 80);
    in[80] = '\0';
    CHECK(canon(in, out, sizeof out) == 0, "80-byte model");
    CHECK(strlen(out) == 80 + strlen(":latest"), "len %zu", strlen(out));
    memset(in, 'm', 81);
    in[81] = '\0';
    CHECK(canon(in, out, sizeof out) == -1, "81-byte model");
    snprintf(in, sizeof in, "m:%0*d", 80, 0);
    CHECK(canon(in, out, sizeof out) == 0, "80-byte tag");
    snprintf(in, sizeof in, "m:%0*d", 81, 0);
    CHECK(canon(in, out, sizeof out) == -1, "81-byte tag");
    /* namespace */
    snprintf(in, sizeof in, "%0*d/m", 80, 0);
    CHECK(canon(in, out, sizeof out) == 0, "80-byte namespace");
    snprintf(in, sizeof in, "%0*d/m", 81, 0);
    CHECK(canon(in, out, sizeof out) == -1, "81-byte namespace");

    /* The canonical form must fit in SOL_MODEL_NAME_MAX - 1 = 255 bytes:
     * host(h) + '/' + ns(80) + '/' + model(80) + ':' + tag(3) = h + 166. */
    char ns[81], mo[81];
    memset(ns, 'n', 80);
    ns[80] = '\0';
    memset(mo, 'm', 80);
    mo[80] = '\0';
    char host[400];
    memset(host, 'h', 89);
    host[89] = '\0';
    snprintf(in, sizeof in, "%s/%s/%s:abc", host, ns, mo);
    CHECK(canon(in, out, sizeof out) == 0 && strlen(out) == 255, "255-byte canonical: %zu",
          strlen(out));
    host[89] = 'h';
    host[90] = '\0';
    snprintf(in, sizeof in, "%s/%s/%s:abc", host, ns, mo);
    CHECK(canon(in, out, sizeof out) == -1, "256-byte canonical rejected");

    /* output buffer bounds: "a:latest" needs 9 bytes */
    CHECK(canon("a", out, 9) == 0 && strcmp(out, "a:latest") == 0, "exact fit");
    strcpy(out, "junk");
    CHECK(canon("a", out, 8) == -1 && out[0] == '\0', "one byte short");

    /* input over SOL_MODEL_INPUT_MAX */
    memset(in, 'a', SOL_MODEL_INPUT_MAX + 1);
    in[SOL_MODEL_INPUT_MAX + 1] = '\0';
    CHECK(canon(in, out, sizeof out) == -1, "overlong input");
}

static void test_alias(void)
{
    char buf[SOL_MODEL_NAME_MAX] = "registry.ollama.ai/library/Llama3.2";
    CHECK(sol_model_canonical(buf, buf, sizeof buf) == 0 && strcmp(buf, "llama3.2:latest") == 0,
          "in-place: \"%s\"", buf);
    strcpy(buf, "q");
    CHECK(sol_model_canonical(buf, buf, sizeof buf) == 0 && strcmp(buf, "q:latest") == 0,
          "in-place growing: \"%s\"", buf);
}

static uint64_t key_of(const char *name)
{
    char out[SOL_MODEL_NAME_MAX];
    if (sol_model_canonical(name, out, sizeof out) != 0)
        return 0;
    return sol_model_key(out);
}

static void test_key(void)
{
    /* FNV-1a 64 reference values: "" is the offset basis, "a" is known. */
    CHECK(sol_model_key("") == 0xcbf29ce484222325ull, "empty");
    CHECK(sol_model_key("a") == 0xaf63dc4c8601ec8cull, "a: %llx",
          (unsigned long long)sol_model_key("a"));
    CHECK(sol_model_key("A") == sol_model_key("a"), "case folded");
    CHECK(sol_model_key(NULL) != 0, "NULL hashes to the basis, not 0");

    CHECK(key_of("llama3.2") == key_of("registry.ollama.ai/library/llama3.2:latest"),
          "same model, same key");
    CHECK(key_of("Llama3.2") == key_of("llama3.2:latest"), "case");
    CHECK(key_of("llama3.2") != key_of("llama3.2:3b"), "different tag");
    CHECK(key_of("myns/llama3.2") != key_of("llama3.2"), "different namespace");
    CHECK(key_of("hf.co/a/b") != key_of("a/b"), "different host");
}

int main(void)
{
    test_valid();
    test_invalid();
    test_lengths();
    test_alias();
    test_key();
    return check_summary();
}
