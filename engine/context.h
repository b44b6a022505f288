/* nn_context: what running a model needs besides its weights, made once and reused.
 *
 * A context belongs to one model. It owns the thread pool for the work between GEMMs, the rotary
 * (RoPE) or ALiBi tables (computed once per model, not once per call) and one run state (activation
 * buffers, KV cache, scratch) for the largest batch shape asked of it so far. The toolkit,
 * generation, jobs and the Python package take a context so that a loop of calls allocates and
 * spawns nothing after the first; the functions without a context (nn_logit_lens, nn_generate,
 * ...) make a temporary one per call, which computes the same bits.
 *
 * One thread uses a context at a time. A hook running inside a context's pass must not start
 * another pass on the same context (nn_context_state refuses: "busy"); it may use a second one. */
#ifndef NN_CONTEXT_H
#define NN_CONTEXT_H

#include "forward.h"

typedef struct nn_context nn_context;

/* params: the shape to allocate now (NULL or zeros: nothing until the first call's shape). */
NNTERP_API int nn_context_init(nn_context **out, const nn_model *model,
                               const nn_state_params *params, nn_err *err);
NNTERP_API void nn_context_free(nn_context *ctx);
NNTERP_API const nn_model *nn_context_model(const nn_context *ctx);

/* The context's state, regrown when `need` exceeds what it holds (each field becomes the larger of
 * the two; the old state's contents are then gone). The pointer is valid until the next
 * nn_context_state or nn_context_forward call on ctx. */
NNTERP_API int nn_context_state(nn_context *ctx, const nn_state_params *need, nn_state **out,
                                nn_err *err);

/* nn_forward on the context's state, sized for batch (no KV-cache slots are added: a batch naming
 * slots needs a state made with them through nn_context_state). Returns NN_OK, NN_STOPPED or
 * NN_ERR. */
NNTERP_API int nn_context_forward(nn_context *ctx, const nn_batch *batch,
                                  const nn_forward_params *params, nn_err *err);
/* nn_forward of batch on st, a state got from nn_context_state(ctx): marks ctx busy for the pass
 * so that a hook cannot regrow the state under it. */
NNTERP_API int nn_context_run(nn_context *ctx, nn_state *st, const nn_batch *batch,
                              const nn_forward_params *params, nn_err *err);
/* The state of the latest call (its logits: nn_state_logits); NULL before the first. */
NNTERP_API nn_state *nn_context_last_state(nn_context *ctx);

#endif
