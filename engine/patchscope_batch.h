/* Batched patchscope: many source prompts against one target prompt in two packed passes (all
 * sources' layers_output captured in one pass, then every (source, layer) copy of the target
 * patched in one pass, in chunks), instead of two passes per source. Rows are batch-invariant
 * (docs/engine.md), so each source's probabilities are nn_patchscope_ctx's bit for bit. */
#ifndef NN_PATCHSCOPE_BATCH_H
#define NN_PATCHSCOPE_BATCH_H

#include "toolkit.h"

/* Sources are packed in tokens: source q is tokens[offsets[q] .. offsets[q+1]). Uses params'
 * layers (NULL: every layer), index_to_patch and source_position; its generate must be 0 (top-k
 * and target probabilities are the caller's, from probs). probs receives [source][layer][vocab]
 * next_token_probs of the patched target, layers in params' order. */
NNTERP_API int nn_patchscope_batch_ctx(nn_context *ctx, const int32_t *tokens,
                                       const int64_t *offsets, int n_sources, nn_prompt target,
                                       const nn_patchscope_params *params, float *probs,
                                       nn_err *err);

#endif
