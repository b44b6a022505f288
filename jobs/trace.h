/* trace: run prompts through the model once and save the chosen hook points at the chosen layers
 * (docs/spec.md §3 "trace / collect"). Layout written through the sink (docs/trace-format.md):
 *
 *   /tokens/ids int32 [N]  /tokens/prompt int32 [N]  /tokens/position int32 [N]
 *   /prompts/token_offsets int64 [P+1]
 *   /activations/<hook>/<layer> float32 [N, d]        per-layer points
 *   /activations/<hook> float32 [N, d] or [N, V]       token_embeddings, ln_final, logits
 *   /activations/next_token_probs float32 [P, V]
 *   /activations/attention_probabilities/<layer>/<prompt> float32 [n_heads, T, T]
 *
 * Rows of every [N, ...] array are the prompts' tokens in order; prompt p is rows
 * token_offsets[p] .. token_offsets[p+1].
 *
 * It is one batch of the job's collect operation (jobs/op_collect.c, nn_op_collect_trace): the
 * store's collector, in this file's layout. */
#ifndef NN_TRACE_H
#define NN_TRACE_H

#include "forward.h"
#include "sink.h"

typedef struct nn_trace_params {
    const char *hooks;  /* comma-separated hook point names, with or without ".layer" */
    const char *layers; /* layer spec for names given without a layer ("all" when NULL) */
} nn_trace_params;

/* Prompt p is tokens[offsets[p] .. offsets[p+1]). The pass stops after the last layer any
 * requested hook needs. */
int nn_trace_run(const nn_model *model, const int32_t *tokens, const int *offsets, int n_prompts,
                 const nn_trace_params *params, const nn_sink *sink, nn_err *err);

/* The token index every store holds (docs/trace-format.md): /tokens/ids, /tokens/prompt,
 * /tokens/position and /prompts/token_offsets, for prompt p = tokens[offsets[p] .. offsets[p+1]).
 */
int nn_write_token_index(const int32_t *tokens, const int64_t *offsets, int64_t n_prompts,
                         const nn_sink *sink, nn_err *err);

#endif
