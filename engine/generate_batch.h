/* Batched generation: many prompts at once, one KV-cache slot per sequence. The prompts are
 * prefilled in one packed pass; then each decode step sends one row per unfinished sequence
 * through a single forward, so the weights are read (and packed by the GEMM) once per step for
 * the whole batch instead of once per prompt. A row's arithmetic does not depend on the batch it
 * is in (docs/engine.md, "batch invariance"), so every sequence gets the tokens nn_generate_ctx
 * gives it alone, bit for bit, greedy or sampled with the same seed. */
#ifndef NN_GENERATE_BATCH_H
#define NN_GENERATE_BATCH_H

#include "generate.h"

/* Generates for n_prompts prompts packed in tokens: prompt q is tokens[offsets[q] ..
 * offsets[q+1]). params applies to every sequence (its on_token must be NULL: the tokens of
 * different sequences arrive interleaved); seeds[q] is sequence q's sampling seed (NULL: params->
 * seed for all). out holds n_prompts rows of params->max_new_tokens ids; n_out[q] receives
 * sequence q's count (the rest of its row is left as it was). Hooks see the packed batch of each
 * step: per-sequence positions come from the batch's pos0, as for one prompt. */
NNTERP_API int nn_generate_batch_ctx(nn_context *ctx, const int32_t *tokens, const int64_t *offsets,
                                     int n_prompts, const nn_generate_params *params,
                                     const uint64_t *seeds, int32_t *out, int *n_out, nn_err *err);

#endif
