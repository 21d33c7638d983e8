/*
 * test_model_store.c - Ollama model names to manifests and blobs, in a
 * temporary OLLAMA_MODELS tree written here: name rules (host, namespace,
 * tag, defaults, case), the model/projector/adapter layers, and the errors
 * (no manifest, no model layer, missing blob, a digest that would escape
 * the store).
 */
#include "check.h"

#include "base/model_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static const char HEX1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char HEX2[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char HEX3[] = "3333333333333333333333333333333333333333333333333333333333333333";

static void mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

static void write_text(const char *path, const char *text)
{
    char d[1024];
    snprintf(d, sizeof d, "%s", path);
    *strrchr(d, '/') = '\0';
    mkdirs(d);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void manifest(const char *rel, const char *layers)
{
    char path[1024], text[4096];
    snprintf(path, sizeof path, "%s/manifests/%s", root, rel);
    snprintf(text, sizeof text,
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest."
             "v2+json\",\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+"
             "json\",\"digest\":\"sha256:%s\",\"size\":10},\"layers\":[%s]}",
             HEX3, layers);
    write_text(path, text);
}

static void blob(const char *hex)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/blobs/sha256-%s", root, hex);
    write_text(path, "GGUF");
}

static void test_ref_parse(void)
{
    struct sol_model_ref r;
    CHECK(sol_model_ref_parse("llama3.2", &r) == 0, "plain");
    CHECK(strcmp(r.host, "registry.ollama.ai") == 0 && strcmp(r.ns, "library") == 0 &&
              strcmp(r.model, "llama3.2") == 0 && strcmp(r.tag, "latest") == 0,
          "%s/%s/%s:%s", r.host, r.ns, r.model, r.tag);
    CHECK(sol_model_ref_parse("codellama:13b", &r) == 0 && strcmp(r.tag, "13b") == 0, "tag");
    CHECK(sol_model_ref_parse("myns/m:q4", &r) == 0 && strcmp(r.ns, "myns") == 0 &&
              strcmp(r.host, "registry.ollama.ai") == 0,
          "namespace");
    CHECK(sol_model_ref_parse("hf.co/Bartowski/Foo-GGUF:Q4_K_M", &r) == 0 &&
              strcmp(r.host, "hf.co") == 0 && strcmp(r.ns, "Bartowski") == 0 &&
              strcmp(r.model, "Foo-GGUF") == 0 && strcmp(r.tag, "Q4_K_M") == 0,
          "host, original case kept");
    CHECK(sol_model_ref_parse("localhost:5000/ns/m", &r) == 0 &&
              strcmp(r.host, "localhost:5000") == 0 && strcmp(r.tag, "latest") == 0,
          "a ':' before the last '/' is a port");
    CHECK(sol_model_ref_parse("https://hf.co/a/b:c", &r) == 0 && strcmp(r.host, "hf.co") == 0,
          "scheme dropped");
    CHECK(sol_model_ref_parse("a/b/c/d", &r) == -1, "four parts");
    CHECK(sol_model_ref_parse("bad name", &r) == -1, "space");
    CHECK(sol_model_ref_parse("m:", &r) == -1, "empty tag");
    CHECK(sol_model_ref_parse("../x", &r) == -1, "dot-dot namespace");
    CHECK(sol_model_ref_parse(NULL, &r) == -1, "NULL");
}

static void test_root(void)
{
    char out[512];
    CHECK(sol_model_store_root("/srv/models/", "/home/u", out, sizeof out) == 0 &&
              strcmp(out, "/srv/models") == 0,
          "%s", out);
    CHECK(sol_model_store_root("", "/home/u", out, sizeof out) == 0 &&
              strcmp(out, "/home/u/.ollama/models") == 0,
          "%s", out);
    CHECK(sol_model_store_root(NULL, NULL, out, sizeof out) == -1, "neither");
    CHECK(sol_model_store_root("/x", NULL, out, 2) == -1, "too small");
    struct sol_model_ref r;
    sol_model_ref_parse("codellama:13b", &r);
    CHECK(sol_model_store_manifest_path("/m", &r, out, sizeof out) == 0 &&
              strcmp(out, "/m/manifests/registry.ollama.ai/library/codellama/13b") == 0,
          "%s", out);
}

static void test_resolve(void)
{
    char layers[1024];
    snprintf(layers, sizeof layers,
             "{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"sha256:%s\","
             "\"size\":5},"
             "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:%s\","
             "\"size\":123456789},"
             "{\"mediaType\":\"application/vnd.ollama.image.projector\",\"digest\":\"sha256:%s\","
             "\"size\":7}",
             HEX3, HEX1, HEX2);
    manifest("registry.ollama.ai/library/big/70b", layers);
    blob(HEX1);
    blob(HEX2);
    struct sol_model_files f;
    char err[1024] = "";
    CHECK(sol_model_store_resolve(root, "big:70b", &f, err, sizeof err) == 0, "%s", err);
    char want[1024];
    snprintf(want, sizeof want, "%s/blobs/sha256-%s", root, HEX1);
    CHECK(strcmp(f.model, want) == 0, "%s", f.model);
    snprintf(want, sizeof want, "%s/blobs/sha256-%s", root, HEX2);
    CHECK(strcmp(f.projector, want) == 0, "%s", f.projector);
    CHECK(f.adapter[0] == '\0', "no adapter");
    CHECK(f.model_size == 123456789, "size");
    CHECK(strcmp(f.digest, HEX1) == 0, "digest");
    /* Full spelling, and a different case (Ollama matches names case-insensitively). */
    CHECK(sol_model_store_resolve(root, "registry.ollama.ai/library/big:70b", &f, err,
                                  sizeof err) == 0,
          "%s", err);
    CHECK(sol_model_store_resolve(root, "BIG:70B", &f, err, sizeof err) == 0, "%s", err);

    /* Another host and namespace. */
    snprintf(layers, sizeof layers,
             "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:%s\"},"
             "{\"mediaType\":\"application/vnd.ollama.image.adapter\",\"digest\":\"sha256:%s\"}",
             HEX2, HEX1);
    manifest("hf.co/org/foo/q4", layers);
    CHECK(sol_model_store_resolve(root, "hf.co/org/foo:q4", &f, err, sizeof err) == 0, "%s", err);
    CHECK(strstr(f.model, HEX2) && strstr(f.adapter, HEX1), "layers");

    /* Errors. */
    CHECK(sol_model_store_resolve(root, "nothere", &f, err, sizeof err) == -1, "absent");
    CHECK(strstr(err, "not found") && strstr(err, "manifests/registry.ollama.ai/library/nothere/"
                                                  "latest"),
          "%s", err);
    manifest("registry.ollama.ai/library/nomodel/latest",
             "{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"sha256:"
             "3333333333333333333333333333333333333333333333333333333333333333\"}");
    CHECK(sol_model_store_resolve(root, "nomodel", &f, err, sizeof err) == -1, "no model layer");
    CHECK(strstr(err, "application/vnd.ollama.image.model") != NULL, "%s", err);
    manifest("registry.ollama.ai/library/escape/latest",
             "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:../../"
             "etc/passwd\"}");
    CHECK(sol_model_store_resolve(root, "escape", &f, err, sizeof err) == -1, "escaping digest");
    CHECK(strstr(err, "invalid digest") != NULL, "%s", err);
    snprintf(layers, sizeof layers,
             "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:%s\"}",
             "4444444444444444444444444444444444444444444444444444444444444444");
    manifest("registry.ollama.ai/library/noblob/latest", layers);
    CHECK(sol_model_store_resolve(root, "noblob", &f, err, sizeof err) == -1, "missing blob");
    CHECK(strstr(err, "is missing") && strstr(err, "sha256-4444"), "%s", err);
    char path[1024];
    snprintf(path, sizeof path, "%s/manifests/registry.ollama.ai/library/garbage/latest", root);
    write_text(path, "{not json");
    CHECK(sol_model_store_resolve(root, "garbage", &f, err, sizeof err) == -1, "bad JSON");
    CHECK(strstr(err, path) != NULL, "%s", err);
    CHECK(sol_model_store_resolve(root, "bad name!", &f, err, sizeof err) == -1, "bad name");
}

static int collect(void *ud, const char *canonical)
{
    char *all = ud;
    strcat(all, canonical);
    strcat(all, ";");
    return 0;
}

static int stop_at_first(void *ud, const char *canonical)
{
    (void)canonical;
    (*(int *)ud)++;
    return 1;
}

static void test_list(void)
{
    /* Run after test_resolve: its manifests are the store. */
    char all[4096] = "";
    int n = sol_model_store_list(root, 100, collect, all);
    CHECK(n == 6, "%d models: %s", n, all);
    CHECK(strstr(all, "big:70b;") && strstr(all, "hf.co/org/foo:q4;") &&
              strstr(all, "noblob:latest;"),
          "%s", all);
    all[0] = '\0';
    CHECK(sol_model_store_list(root, 2, collect, all) == 2, "bounded");
    int calls = 0;
    CHECK(sol_model_store_list(root, 100, stop_at_first, &calls) == 0 && calls == 1, "stops");
    CHECK(sol_model_store_list("/nonexistent", 100, collect, all) == -1, "no store");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    snprintf(root, sizeof root, "/tmp/sollol-test-store-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_ref_parse();
    test_root();
    test_resolve();
    test_list();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
    return check_summary();
}
