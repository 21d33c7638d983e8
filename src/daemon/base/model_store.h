/*
 * model_store.h - finds a model's GGUF in Ollama's local store
 * (PROTOCOLS.md section 4), so the coordinator can hand llama-server the
 * same file Ollama would load.
 *
 *   <root>/manifests/<host>/<namespace>/<model>/<tag>   (JSON manifest)
 *   <root>/blobs/sha256-<hex>                           (the layers)
 *
 * root is $OLLAMA_MODELS, else $HOME/.ollama/models. The manifest's layer of
 * media type application/vnd.ollama.image.model is the GGUF; .projector and
 * .adapter layers are reported too (llama-server's --mmproj / --lora).
 *
 * sol_model_store_resolve() does blocking file I/O (small: a directory
 * lookup and one manifest): callers on the loop run it in a uv_work item.
 * The other functions are pure.
 */
#ifndef SOLLOL_MODEL_STORE_H
#define SOLLOL_MODEL_STORE_H

#include <stddef.h>
#include <stdint.h>

#define SOL_STORE_PATH_MAX 4096

/* The parts of a model name, defaults applied (original case kept). */
struct sol_model_ref {
    char host[352];
    char ns[96];
    char model[96];
    char tag[96];
};

/* What a manifest says about a model's files. Empty strings = no such layer. */
struct sol_model_files {
    char manifest[SOL_STORE_PATH_MAX];
    char model[SOL_STORE_PATH_MAX];     /* the GGUF blob */
    char projector[SOL_STORE_PATH_MAX]; /* multimodal projector blob, or "" */
    char adapter[SOL_STORE_PATH_MAX];   /* LoRA adapter blob, or "" */
    uint64_t model_size;                /* from the manifest's layer, 0 unknown */
    char digest[72];                    /* the model layer's hex digest */
};

/*
 * Splits `name` ([scheme://][host/][namespace/]model[:tag]) into parts,
 * applying the defaults registry.ollama.ai, library and latest. A ':' is a
 * tag only after the last '/'. Returns 0, or -1 when the name is not a
 * valid Ollama model name (model_name.h's rules) or a part does not fit.
 */
int sol_model_ref_parse(const char *name, struct sol_model_ref *out);

/*
 * The store root: $OLLAMA_MODELS when set and non-empty, else
 * $HOME/.ollama/models. `env_models` and `env_home` are those variables'
 * values (NULL = unset), so tests need not touch the environment.
 * Returns 0, or -1 when neither is set or the result does not fit.
 */
int sol_model_store_root(const char *env_models, const char *env_home, char *out, size_t outlen);

/* "<root>/manifests/<host>/<ns>/<model>/<tag>". Returns 0, or -1 when it
 * does not fit. No file system access. */
int sol_model_store_manifest_path(const char *root, const struct sol_model_ref *ref, char *out,
                                  size_t outlen);

/*
 * Parses a manifest's JSON text (at most `len` bytes) and fills out's blob
 * paths under `root` (the manifest field is left alone). Digests must be
 * "sha256:" + 64 hex digits; anything else is rejected (a digest becomes a
 * path: no "../" may get through). Returns 0, or -1 with a message in err
 * (no model layer, bad JSON, bad digest). Pure.
 */
int sol_model_store_parse_manifest(const char *root, const char *json, size_t len,
                                   struct sol_model_files *out, char *err, size_t errlen);

/*
 * Resolves `name` to its files: finds the manifest (each path component is
 * matched case-insensitively, as Ollama matches names), reads it (at most
 * 1 MiB) and checks that the model blob exists. Blocking. Returns 0, or -1
 * with a message naming the model and the path that is missing or bad.
 */
int sol_model_store_resolve(const char *root, const char *name, struct sol_model_files *out,
                            char *err, size_t errlen);

/*
 * Lists the models of the store: every manifest file
 * <root>/manifests/<host>/<ns>/<model>/<tag>, as a canonical name
 * (model_name.h) passed to `each` (which returns nonzero to stop). At most
 * `max` names; entries that are not valid names are skipped. Blocking (a
 * directory walk). Returns the count, or -1 when there is no manifests
 * directory.
 */
int sol_model_store_list(const char *root, size_t max, int (*each)(void *ud, const char *canonical),
                         void *ud);

#endif
