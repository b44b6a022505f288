/* The forward pass over a packed batch.
 *
 * A batch is several token sequences packed row after row, [n_tokens, d], with no padding: each
 * sequence attends only to itself, causally. A sequence may continue earlier tokens held in a
 * KV-cache slot (generation), or be complete in this call (tracing a dataset).
 *
 * Run-state (activations, caches) lives in nn_state, allocated once for a maximum batch shape; the
 * pass allocates nothing unless a hook asks for attention probabilities or full logits of a larger
 * shape than seen before. */
#ifndef NN_FORWARD_H
#define NN_FORWARD_H

#include "hooks.h"
#include "model.h"

typedef struct nn_batch {
    const int32_t *tokens; /* [n_tokens]; sequence s is tokens[offsets[s] .. offsets[s+1]) */
    int n_tokens;
    int n_seqs;
    const int *offsets; /* [n_seqs + 1], offsets[0] = 0, offsets[n_seqs] = n_tokens */
    const int *pos0;    /* [n_seqs] position of each sequence's first token; NULL: all 0 */
    const int *slot;    /* [n_seqs] KV-cache slot of each sequence; NULL: no cache (pos0 = 0) */
} nn_batch;

typedef struct nn_state_params {
    int max_tokens;    /* rows per call */
    int max_seqs;      /* sequences per call */
    int n_slots;       /* KV-cache slots (0: no cache) */
    int slot_capacity; /* positions per slot */
} nn_state_params;

typedef struct nn_state nn_state;

int nn_state_init(nn_state **out, const nn_model *model, const nn_state_params *params,
                  nn_err *err);
void nn_state_free(nn_state *state);

typedef struct nn_forward_params {
    const nn_hookset *hooks; /* may be NULL */
    bool want_logits;        /* compute each sequence's last-position logits */
} nn_forward_params;

#define NN_STOPPED 1 /* a hook stopped the pass early; not an error */

/* Runs the model over batch. Returns NN_OK, NN_STOPPED or NN_ERR. A model with an executor
 * (a pipeline stage, see stage.h) runs through it. */
int nn_forward(const nn_model *model, nn_state *state, const nn_batch *batch,
               const nn_forward_params *params, nn_err *err);

/* [n_seqs, vocab]: the last-position logits of the latest call with want_logits. */
const float *nn_state_logits(const nn_state *state);

/* Softmax over n values, in place, computed as Hugging Face does in float32 (max subtracted). */
void nn_softmax(float *x, size_t n);

/* Columns of a per-token hook view of hp for this model: d_model for the residual-stream points,
 * vocab_size for logits and next_token_probs, n_experts for router_probabilities (0 on a dense
 * model), 0 for attention_probabilities (its width is each sequence's context). */
size_t nn_hook_point_width(const nn_model *model, nn_hook_point hp);

/* The model's own output head on arbitrary residual rows: logits (n, V) = post(head(final_norm(x)))
 * with head's bias and post the family's logit post-processing (Cohere's logit_scale, Gemma-2's
 * final soft-capping). This is the logit lens's unembedding; the last layer's rows give the
 * model's logits. state lends scratch space; normed_scratch holds (n, D). */
void nn_unembed(const nn_model *model, nn_state *state, const float *x, int n,
                float *normed_scratch, float *logits);

/* The projection GEMM the pass itself uses (linear() in forward.c, bias included), for weights
 * that are not the model's: y (n, out) = x (n, in) W + b. A row's bits do not depend on n as long
 * as n >= nn_linear_min_rows(W) (fewer is an error: the caller pads, see engine/sae.c). state
 * lends its thread pool. */
int nn_linear_min_rows(const nn_linear *W);
int nn_linear_apply(const nn_state *state, const nn_linear *W, const float *x, size_t ldx, float *y,
                    size_t ldy, int n, nn_err *err);
#endif
