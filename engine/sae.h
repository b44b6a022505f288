/* Sparse autoencoders and transcoders on the engine's hook points (docs/sae.md).
 *
 * Loads the two formats people download:
 * - SAELens: DIR/cfg.json + DIR/sae_weights.safetensors; architectures standard (ReLU), jumprelu,
 *   topk, gated, and the transcoders transcoder, skip_transcoder, jumprelu_transcoder,
 *   jumprelu_skip_transcoder;
 * - EleutherAI sparsify: DIR/cfg.json + DIR/sae.safetensors (TopK; transcode, skip_connection).
 * The SAE's hook (a TransformerLens name such as blocks.12.hook_resid_post, a sparsify hookpoint
 * such as layers.12, or this project's own name) is mapped to this project's hook points by
 * nn_sae_hook_map; nn_sae_bind checks it against a model.
 *
 * Encoding runs in row blocks through the engine's GEMM (nn_linear_apply, the route forward_kernels.c's
 * projections take), so no dense [tokens x d_sae] array exists beyond one block; each row leaves
 * only its non-zero features (and optionally its reconstruction). */
#ifndef NN_SAE_H
#define NN_SAE_H

#include "forward.h"
#include "hooks.h"
#include "model.h"

typedef enum {
    NN_SAE_STANDARD, /* relu(x W_enc + b_enc) */
    NN_SAE_JUMPRELU, /* pre * (pre > threshold), pre = x W_enc + b_enc */
    NN_SAE_TOPK,     /* the k largest of x W_enc + b_enc, relu'd; the others 0 */
    NN_SAE_GATED,    /* (x W_enc + b_gate > 0) * relu(x W_enc * exp(r_mag) + b_mag) */
} nn_sae_arch;

typedef enum { NN_SAE_FORMAT_SAELENS, NN_SAE_FORMAT_SPARSIFY } nn_sae_format;

/* Run-time input normalization (SAELens' normalize_activations). */
typedef enum {
    NN_SAE_NORM_NONE,          /* also expected_average_only_in: SAELens folds that scale into the
                                  weights when it loads a release, and applies nothing at run time */
    NN_SAE_NORM_CONSTANT_NORM, /* constant_norm_rescale: x * sqrt(d_in) / |x|, output divided back
                                */
    NN_SAE_NORM_LAYER_NORM,    /* layer_norm: (x - mean) / (std + 1e-5), output * std + mean */
} nn_sae_norm;

typedef struct nn_sae {
    char *dir;
    nn_sae_format format;
    nn_sae_arch arch;
    char arch_name[32]; /* as cfg.json spells it */
    bool transcoder;    /* output predicts another hook (d_out may differ from d_in) */
    int d_in, d_out, d_sae, k;
    bool subtract_b_dec; /* input minus b_dec before encoding (apply_b_dec_to_input) */
    bool center_input;   /* TransformerLens' center_writing_weights: rows minus their mean */
    nn_sae_norm norm;
    char *hook_name;     /* the SAE's own input hook name */
    char *hook_out_name; /* transcoders: the output hook name; NULL otherwise */
    /* Resolved by nn_sae_bind: this project's hook points. */
    nn_hook_point in_point, out_point;
    int in_layer, out_layer;
    /* Weights, float32, owned. */
    nn_linear enc;    /* [d_in -> d_sae], bias b_enc (b_gate for gated) */
    float *W_dec;     /* [d_sae, d_out] */
    float *b_dec;     /* [d_out]; for subtract_b_dec, d_out == d_in */
    float *threshold; /* [d_sae] jumprelu */
    float *b_mag;     /* [d_sae] gated */
    float *mag_scale; /* [d_sae] gated: exp(r_mag) */
    nn_linear skip;   /* skip transcoders: [d_in -> d_out], w NULL when absent */
    float *storage;   /* one allocation holding every array above */
} nn_sae;

/* Loads DIR. Errors name the file and field. */
int nn_sae_load(const char *dir, nn_sae *out, nn_err *err);
void nn_sae_free(nn_sae *sae);

/* Maps an SAE hook name to this project's hook name ("blocks.6.hook_resid_post" ->
 * "layers_output.6"), written to out. Names this project already uses pass through. Returns NN_ERR
 * with the reason for names that have no equivalent (attention heads' hook_z, MLP hidden units). */
int nn_sae_hook_map(const char *name, char *out, size_t out_size, nn_err *err);

/* Resolves the SAE's hooks against model and checks its widths and the family (hook_resid_mid
 * does not exist on parallel blocks; center_writing_weights applies to LayerNorm families only).
 * hook_override (may be NULL) replaces the SAE's input hook name. */
int nn_sae_bind(nn_sae *sae, const nn_model *model, const char *hook_override, nn_err *err);

/* Scratch space of nn_sae_encode, sized for one SAE and up to max_rows rows a call. */
typedef struct nn_sae_work nn_sae_work;
int nn_sae_work_init(nn_sae_work **out, const nn_sae *sae, nn_state *state, nn_err *err);
void nn_sae_work_free(nn_sae_work *w);

/* Encodes n rows of x (row stride ldx). For each row r, its active features (value != 0) go to
 * ids/vals[r * keep ...]: the `keep` largest by value (ties: the smaller id first), in that
 * order; count[r] says how many (the rest of the row's slots are -1 / 0). l0[r] (may be NULL) is
 * the number of active features before truncation to keep. recon (may be NULL, [n, d_out], row
 * stride d_out) receives the reconstruction from all active features, decoded as SAELens
 * decodes (sum of value * W_dec row, + b_dec, the input normalization undone, + the skip
 * connection). */
int nn_sae_encode(const nn_sae *sae, nn_sae_work *w, const float *x, size_t ldx, int n, int keep,
                  int32_t *ids, float *vals, int32_t *count, int32_t *l0, float *recon,
                  nn_err *err);

#endif
