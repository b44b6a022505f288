/* The interpretability toolkit (docs/spec.md §3), built on the engine's hook points: logit lens,
 * patchscope lens and generation, steering, target-token probabilities, activation patching,
 * skipping layers and attention-probability edits. Semantics follow the Python library nnterp.
 *
 * Prompts are given as token ids (tokenize with nn_tokenizer_encode). A position is an index into a
 * prompt, negative counting from its end (-1 = last token). Results are owned by the caller and
 * released with the matching _free function.
 *
 * Each operation that runs the model has a _ctx form taking an nn_context (context.h) instead of
 * the model: a caller in a loop (a job, the Python package) makes the context once, and the calls
 * reuse its state, thread pool and rotary tables. The forms taking the model make a temporary
 * context; both give the same bits. */
#ifndef NN_TOOLKIT_H
#define NN_TOOLKIT_H

#include "forward.h"
#include "generate.h"
#include "tokenizer.h"

/* A prompt as token ids. */
typedef struct nn_prompt {
    const int32_t *ids;
    int n;
} nn_prompt;

/* Resolves a (possibly negative) position against a prompt of n tokens; -1 when out of range. */
int nn_position_resolve(int position, int n);

/* ---- Logit lens ------------------------------------------------------------------------------ */

typedef struct nn_lens_params {
    const int *layers; /* NULL: every layer */
    int n_layers;
    const int *positions; /* NULL: the last position */
    int n_positions;
    int top_k;                 /* 0: none */
    const int32_t *target_ids; /* probabilities of these tokens at every layer and position */
    int n_targets;
    bool full;    /* keep every distribution (layers x positions x V) */
    bool inverse; /* nnterp's inverse lens: the head applied to -ln_final(h) */
} nn_lens_params;

/* For each prompt p, layer l, position j: softmax(head(ln_final(layers_output.l)))[row].
 * Arrays are [prompt][layer][position][...] in C order. */
typedef struct nn_lens_result {
    int n_prompts, n_layers, n_positions, top_k, n_targets;
    size_t vocab;
    int *layers;         /* [n_layers] resolved layer indices */
    int *positions;      /* [n_prompts][n_positions] resolved positions */
    int32_t *top_ids;    /* [.., top_k] most probable first */
    float *top_probs;    /* [.., top_k] */
    float *target_probs; /* [.., n_targets] */
    float *full;         /* [.., vocab] when params.full */
} nn_lens_result;

int nn_logit_lens(const nn_model *model, const nn_prompt *prompts, int n_prompts,
                  const nn_lens_params *params, nn_lens_result *out, nn_err *err);
NNTERP_API int nn_logit_lens_ctx(nn_context *ctx, const nn_prompt *prompts, int n_prompts,
                                 const nn_lens_params *params, nn_lens_result *out, nn_err *err);
void nn_lens_result_free(nn_lens_result *r);

/* The lens distribution of residual rows: probs (n, V) = softmax(head(ln_final(rows))) with the
 * model's own final norm and head (its bias, logit scale and soft-capping included); inverse uses
 * -ln_final(rows). state lends scratch space; normed_scratch holds (n, d). */
void nn_lens_probs(const nn_model *model, nn_state *state, const float *rows, int n, bool inverse,
                   float *normed_scratch, float *probs);

/* The k largest entries of probs[n] (ties: lower id first), most probable first. */
void nn_top_k(const float *probs, size_t n, int k, int32_t *ids, float *values);

/* ---- Patchscope ---------------------------------------------------------------------------------
 */

/* nnterp's repeat_prompt: words joined as "w{rel}w", separated by sep, then sep + placeholder.
 * words NULL: {"king", "1135", "hello"}; rel " ", sep "\n", placeholder "?" give
 * "king king\n1135 1135\nhello hello\n?". Returns a new string. */
char *nn_repeat_prompt(const char *const *words, int n_words, const char *rel, const char *sep,
                       const char *placeholder, nn_err *err);

typedef struct nn_patchscope_params {
    const int *layers; /* NULL: every layer */
    int n_layers;
    int index_to_patch;  /* position in the target, default -1 */
    int source_position; /* position in the source, default -1 (its last token) */
    int top_k;
    const int32_t *target_ids;
    int n_targets;
    int generate; /* > 0: also generate this many tokens after patching (per layer) */
    nn_generate_params gen;
} nn_patchscope_params;

nn_patchscope_params nn_patchscope_default_params(void);

/* Per layer l: the target prompt run with layers_output.l at index_to_patch replaced by the
 * source's layers_output.l at source_position; its next_token_probs (and generation). */
typedef struct nn_patchscope_result {
    int n_layers, top_k, n_targets, generated;
    size_t vocab;
    int *layers;
    float *probs;        /* [layer][vocab] next_token_probs of the patched target */
    int32_t *top_ids;    /* [layer][top_k] */
    float *top_probs;    /* [layer][top_k] */
    float *target_probs; /* [layer][n_targets] */
    int32_t *tokens;     /* [layer][generate] generated ids, -1 after an early EOS */
} nn_patchscope_result;

int nn_patchscope(const nn_model *model, nn_prompt source, nn_prompt target,
                  const nn_patchscope_params *params, nn_patchscope_result *out, nn_err *err);
NNTERP_API int nn_patchscope_ctx(nn_context *ctx, nn_prompt source, nn_prompt target,
                                 const nn_patchscope_params *params, nn_patchscope_result *out,
                                 nn_err *err);
void nn_patchscope_result_free(nn_patchscope_result *r);

/* ---- Steering ---------------------------------------------------------------------------------
 */

/* Adds factor * vector to layers_output at the given layers and positions. Positions are absolute
 * positions in the sequence (0 = first token), so a steer keeps applying to generated tokens:
 * every position when n_positions == 0 and from_position == 0; else positions >= from_position,
 * or exactly the listed ones. The vector has d_model floats and must outlive the hook set. */
typedef struct nn_steer {
    const float *vector;
    float factor;
    const int *layers;
    int n_layers;
    const int *positions;
    int n_positions;
    int from_position;
} nn_steer;

/* Adds the steering hooks to hs; *steer is referenced, not copied. */
int nn_steer_add(nn_hookset *hs, const nn_model *model, const nn_steer *steer, nn_err *err);

/* Reads a float32 (or float64, converted) .npy vector of shape [d] or [1, d]; strict. */
int nn_npy_read_vector(const char *path, float **out, size_t *n, nn_err *err);
/* Writes a float32 [n] .npy file. */
int nn_npy_write_vector(const char *path, const float *v, size_t n, nn_err *err);

/* mean(layers_output.layer over set a) - mean(over set b): means over every position of every
 * prompt, except a first token that is the BOS id (bos < 0: none), whose activations are outliers
 * unrelated to content. out has d_model floats. */
int nn_contrast_vector(const nn_model *model, const nn_prompt *a, int n_a, const nn_prompt *b,
                       int n_b, int layer, int32_t bos, float *out, nn_err *err);
NNTERP_API int nn_contrast_vector_ctx(nn_context *ctx, const nn_prompt *a, int n_a,
                                      const nn_prompt *b, int n_b, int layer, int32_t bos,
                                      float *out, nn_err *err);

/* ---- Target probabilities -------------------------------------------------------------------- */

/* nnterp's get_first_tokens: for each word, the first token of "word" and of " word" (a bare-space
 * token is skipped), deduplicated in order. Uses nnterp's tokenizer-agnostic method (encode
 * "🍐word" and drop the pear's tokens) so SentencePiece tokenizers see "word" without a prefix
 * space. Appends to out. */
int nn_first_tokens(nn_tokenizer *tok, const char *const *words, int n_words, nn_ids *out,
                    nn_err *err);

/* next_token_probs of each prompt (one packed pass): out [n_prompts][vocab]. */
int nn_next_token_probs(const nn_model *model, const nn_prompt *prompts, int n_prompts,
                        const nn_hookset *hooks, float *out, nn_err *err);
NNTERP_API int nn_next_token_probs_ctx(nn_context *ctx, const nn_prompt *prompts, int n_prompts,
                                       const nn_hookset *hooks, float *out, nn_err *err);

/* ---- Patching, skipping, attention edits ----------------------------------------------------- */

/* A hook point value to patch from a source run into a target run: `point`.`layer` at
 * source_position (of the source) written into target_position (of the target). */
typedef struct nn_patch {
    nn_hook_point point;
    int layer;
    int source_position, target_position;
} nn_patch;

/* Runs source, captures the patched values, runs target with them written in; returns the
 * target's next_token_probs [vocab] (and its last logits when logits != NULL). */
int nn_activation_patch(const nn_model *model, nn_prompt source, nn_prompt target,
                        const nn_patch *patches, int n_patches, float *next_token_probs,
                        float *logits, nn_err *err);
NNTERP_API int nn_activation_patch_ctx(nn_context *ctx, nn_prompt source, nn_prompt target,
                                       const nn_patch *patches, int n_patches,
                                       float *next_token_probs, float *logits, nn_err *err);

/* Skips layer blocks: layers_output.i := layers_input.i for each listed layer, or := the given
 * rows when values != NULL (values[k] holds the whole batch's [n_tokens, d] for layers[k]).
 * The returned object owns the hook state; add it to a hook set, free after the passes. */
typedef struct nn_skip nn_skip;
int nn_skip_add(nn_hookset *hs, const nn_model *model, const int *layers, int n_layers,
                const float *const *values, nn_skip **out, nn_err *err);
void nn_skip_free(nn_skip *s);

/* Attention-probability edits at one layer: for the given head (-1: all) and query position
 * (-1: the last; NN_ALL_POSITIONS: every query), either set P[q, key] = value, or move the mass of
 * key `key` onto key `to_key`, or (NN_ATTN_SCALE) multiply P[q, k] by value (>= 0; 0 zeroes it)
 * for k = key, or for every k of keys[0..n_keys) when n_keys > 0 (keys a query cannot see are left
 * alone). renormalize rescales the row's other entries so it sums to 1 again (for set and
 * scale; for scale the edited keys are taken together). Edits apply before the probabilities weight the values. With attention sinks
 * (gpt-oss) a row sums to 1 - p(sink); renormalize then treats the sink as one more entry of the
 * row: the other keys and the sink's (implicit) share are scaled alike, so keys + sink sum to 1. */
#define NN_ALL_POSITIONS (-100000)
typedef enum { NN_ATTN_SET, NN_ATTN_MOVE, NN_ATTN_SCALE } nn_attn_op;
typedef struct nn_attn_edit {
    int layer, head, query, key, to_key;
    nn_attn_op op;
    float value;
    bool renormalize;
    const int *keys; /* NN_ATTN_SCALE: n_keys > 0 edits these keys (key is then ignored) */
    int n_keys;
} nn_attn_edit;

/* *edit is referenced, not copied. */
int nn_attn_edit_add(nn_hookset *hs, const nn_model *model, const nn_attn_edit *edit, nn_err *err);

/* nnterp's patch_object_attn_lens(nn_model, source_prompts, target_prompts, attn_idx_patch,
 * num_patches): for each start layer l, the target is run with the attention input
 * (attentions_input, the normed residual the attention reads) at position attn_idx_patch replaced,
 * at layers l .. min(L, l + num_patches) - 1, by the source's attentions_input at those layers at
 * source_position (nnterp: the last token). Only what the attention reads changes (the queries,
 * keys and values of that position); the residual stream is left as it was. */
typedef struct nn_object_attn_lens_params {
    const int *layers; /* the start layers; NULL: every layer (nnterp) */
    int n_layers;
    int attn_idx_patch;  /* nnterp's attn_idx_patch: the target position (negative from the end) */
    int num_patches;     /* nnterp's num_patches (default 5): layers patched per start layer */
    int source_position; /* default -1: the source's last token (nnterp) */
} nn_object_attn_lens_params;

nn_object_attn_lens_params nn_object_attn_lens_default_params(void);

/* probs [n_layers][vocab]: the patched target's next_token_probs per start layer (nnterp returns
 * them as [target prompt][layer][vocab]). All start layers run in one packed pass. */
int nn_object_attn_lens(const nn_model *model, nn_prompt source, nn_prompt target,
                        const nn_object_attn_lens_params *params, float *probs, nn_err *err);
NNTERP_API int nn_object_attn_lens_ctx(nn_context *ctx, nn_prompt source, nn_prompt target,
                                       const nn_object_attn_lens_params *params, float *probs,
                                       nn_err *err);

#endif
