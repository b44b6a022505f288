/* Hook points: the standardized view of every model (docs/spec.md §2).
 *
 * A caller builds an nn_hookset once from names ("layers_output.3", "mlps_output" for every
 * layer) and passes it to each forward call. At every hook site the forward pass asks the set for
 * the site's callbacks — one branch when nothing is hooked there — and calls them with a view of
 * the live activation. A callback may read the view, overwrite it or add to it (the pass continues
 * with what it left there), and may stop the pass early by returning NN_HOOK_STOP. */
#ifndef NN_HOOKS_H
#define NN_HOOKS_H

#include "nn_base.h"

typedef enum {
    NN_HP_TOKEN_EMBEDDINGS,
    NN_HP_LAYERS_INPUT,
    NN_HP_ATTENTIONS_INPUT,
    NN_HP_ATTENTION_PROBABILITIES,
    NN_HP_ATTENTIONS_OUTPUT,
    NN_HP_MLPS_INPUT,
    NN_HP_MLPS_OUTPUT,
    NN_HP_LAYERS_OUTPUT,
    NN_HP_LN_FINAL,
    NN_HP_LOGITS,
    NN_HP_NEXT_TOKEN_PROBS,
    /* Appended later; per layer. MoE layers only: [N, n_experts], the router softmax of each token
     * before top-k selection (an edit changes the routing: top-k and weights use what the hooks
     * leave). Never called on dense layers. */
    NN_HP_ROUTER_PROBABILITIES,
    /* Appended for sparse autoencoders (docs/sae.md has the TransformerLens names they stand for);
     * per layer, [N, d]:
     * - layers_middle: the residual stream between attention and MLP (the pre-MLP norm's input);
     *   sequential blocks only, never called on parallel ones.
     * - attentions_residual, mlps_residual: what the residual stream adds for the branch, after
     *   the family's post-norm (Gemma 2/3's sandwich norms; elsewhere the same as *_output, for
     *   Bloom the branch without the residual), before Granite's residual multiplier.
     * - attentions_normalized, mlps_normalized: the branch's pre-norm input normalized without the
     *   norm's gain and bias ((x - mean) / std for LayerNorm, x / rms for RMSNorm); a copy computed
     *   only when hooked: writing to it changes nothing downstream. */
    NN_HP_LAYERS_MIDDLE,
    NN_HP_ATTENTIONS_RESIDUAL,
    NN_HP_MLPS_RESIDUAL,
    NN_HP_ATTENTIONS_NORMALIZED,
    NN_HP_MLPS_NORMALIZED,
    NN_HP_COUNT
} nn_hook_point;

const char *nn_hook_point_name(nn_hook_point hp);
bool nn_hook_point_per_layer(nn_hook_point hp);

/* Parses "layers_output.3", "layers_output.-1" or "ln_final"; a per-layer name without a layer
 * gives *layer = NN_ALL_LAYERS. Layer indices are checked against n_layers. */
#define NN_ALL_LAYERS (-1000)
int nn_hook_name_parse(const char *name, int n_layers, nn_hook_point *hp, int *layer, nn_err *err);

/* Parses a layer spec — "all", "5", "0,3,7", "-1", "0:12:2", "4:" — into a new array of distinct
 * ascending layer indices (caller frees). */
int nn_layers_parse(const char *spec, int n_layers, int **layers, int *count, nn_err *err);

struct nn_batch;

/* What a hook sees: a row-major [rows, cols] view of the live activation.
 * - Most points: the whole packed batch, rows = batch->n_tokens, cols = d (or vocab for logits).
 *   Rows of sequence s start at batch offset s (nn_batch_offset).
 * - attention_probabilities: one sequence at a time (seq >= 0): [n_heads * n, ctx] where n is the
 *   sequence's new tokens in this call and ctx = pos0 + n its keys; head h is rows [h*n, (h+1)*n).
 * - next_token_probs: rows = n_seqs, cols = vocab; each row is the softmax of that sequence's last
 *   logits row. Writing to it changes nothing downstream.
 * - router_probabilities: rows = batch->n_tokens, cols = n_experts (MoE layers only). */
typedef struct nn_hook_view {
    nn_hook_point point;
    int layer; /* -1 for points that are not per layer */
    float *data;
    size_t rows, cols;
    int seq;     /* sequence index for per-sequence views, -1 otherwise */
    int n_heads; /* attention_probabilities only */
    const struct nn_batch *batch;
} nn_hook_view;

enum { NN_HOOK_CONTINUE = 0, NN_HOOK_STOP = 1 };

/* Returns NN_HOOK_CONTINUE, NN_HOOK_STOP, or NN_ERR after filling err. */
typedef int (*nn_hook_fn)(const nn_hook_view *view, void *user, nn_err *err);

/* Opaque outside the engine's own build (as nn_model, model.h): programs make one with
 * nn_hookset_create (api.h). */
typedef struct nn_hook_entry nn_hook_entry;
typedef struct nn_hookset nn_hookset;

#ifdef NNTERP_INTERNAL
struct nn_hook_entry {
    nn_hook_fn fn;
    void *user;
    struct nn_hook_entry *next;
};

struct nn_hookset {
    int n_layers;
    nn_hook_entry **sites; /* [NN_HP_COUNT * n_layers]; non-layer points use layer slot 0 */
};

/* In place, for the engine's own callers; programs use nn_hookset_create/destroy (api.h). */
int nn_hookset_init(nn_hookset *hs, int n_layers, nn_err *err);
void nn_hookset_free(nn_hookset *hs);
#endif /* NNTERP_INTERNAL */

/* layer: an index, -1 for non-layer points, or NN_ALL_LAYERS. Callbacks run in the order added. */
int nn_hookset_add(nn_hookset *hs, nn_hook_point hp, int layer, nn_hook_fn fn, void *user,
                   nn_err *err);
int nn_hookset_add_name(nn_hookset *hs, const char *name, nn_hook_fn fn, void *user, nn_err *err);
/* A hook that only stops the pass: added at the last layer a caller needs, it skips the rest. */
int nn_hook_stop(const nn_hook_view *view, void *user, nn_err *err);

#ifdef NNTERP_INTERNAL
static inline nn_hook_entry *nn_hookset_site(const nn_hookset *hs, nn_hook_point hp, int layer)
{
    if (!hs)
        return NULL;
    return hs->sites[(size_t)hp * (size_t)hs->n_layers + (size_t)(layer < 0 ? 0 : layer)];
}
#endif

#endif
