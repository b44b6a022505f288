/* Accessors and helpers for programs that link libnnterp without reaching into struct internals:
 * C++ and foreign-function callers (the Python package), and C programs that want to stay
 * source-compatible when nn_model or nn_hookset change shape. Outside the project's own build
 * (NNTERP_INTERNAL) both are opaque (model.h, hooks.h); everything a caller needs is here. */
#ifndef NN_API_H
#define NN_API_H

#include "hooks.h"
#include "model.h"

/* The version the library was built as (NNTERP_VERSION_* of the headers it was built with), to
 * check that a header or a binding matches the library at run time. */
NNTERP_API const char *nn_version_string(void);
NNTERP_API int nn_version_number(void); /* major * 10000 + minor * 100 + patch */

/* ---- nn_model ---------------------------------------------------------------------------------
 */
NNTERP_API const nn_config *nn_model_cfg(const nn_model *m);
NNTERP_API int nn_model_n_layers(const nn_model *m);
NNTERP_API int nn_model_d_model(const nn_model *m);
NNTERP_API int nn_model_n_heads(const nn_model *m);
NNTERP_API int nn_model_n_kv_heads(const nn_model *m);
NNTERP_API int nn_model_head_dim(const nn_model *m);
NNTERP_API int nn_model_d_ff(const nn_model *m);
NNTERP_API int nn_model_vocab_size(const nn_model *m);
NNTERP_API int nn_model_max_positions(const nn_model *m);
NNTERP_API int nn_model_n_experts(const nn_model *m);
NNTERP_API int nn_model_bos(const nn_model *m); /* -1 when unknown */
NNTERP_API int nn_model_eos(const nn_model *m);
NNTERP_API const char *nn_model_type(const nn_model *m);   /* config.json model_type */
NNTERP_API const char *nn_model_family(const nn_model *m); /* a human name */
NNTERP_API const char *nn_model_source(const nn_model *m); /* the resolved directory or file */
/* config.json as loaded; NULL for a llama2.c checkpoint. */
NNTERP_API const char *nn_model_config_json(const nn_model *m);

/* ---- nn_hookset on the heap -------------------------------------------------------------------
 */
NNTERP_API int nn_hookset_create(nn_hookset **out, int n_layers, nn_err *err);
NNTERP_API void nn_hookset_destroy(nn_hookset *hs);
NNTERP_API int nn_hookset_n_layers(const nn_hookset *hs);

/* A hook that copies each view it sees into a caller's buffer: the way to keep an activation
 * (the live buffer is reused by the next layer). A view larger than capacity floats is an error
 * naming the point; rows and cols receive the last view's shape, calls counts the views. */
typedef struct nn_copy_target {
    float *dst;
    size_t capacity; /* floats */
    size_t rows, cols;
    int calls;
} nn_copy_target;
NNTERP_API int nn_hook_copy(const nn_hook_view *view, void *user, nn_err *err);

/* ---- nn_err -----------------------------------------------------------------------------------
 */
/* Sets the message without printf formatting (for callers that cannot pass varargs). */
NNTERP_API int nn_err_set(nn_err *err, const char *message);

/* sizeof a public struct by name ("nn_hook_view", "nn_lens_params", ...), 0 when unknown: a binding
 * that mirrors a struct checks its layout against the library's at load time. */
NNTERP_API size_t nn_abi_sizeof(const char *type_name);

#endif
