/* Autoregressive generation with a KV cache: greedy, or temperature / top-p sampling with a seed.
 * Hooks apply to every forward call (the prompt pass and each new token), so steering and patching
 * work during generation. */
#ifndef NN_GENERATE_H
#define NN_GENERATE_H

#include "context.h"
#include "forward.h"

typedef struct nn_generate_params {
    int max_new_tokens;
    float temperature; /* 0: greedy (argmax) */
    float top_p;       /* 1: no nucleus truncation */
    uint64_t seed;
    bool stop_at_eos;
    const nn_hookset *hooks;
    /* Called with each new token as it is chosen (streaming); may be NULL. A negative return
     * stops generation with that error. */
    int (*on_token)(int32_t token, void *user, nn_err *err);
    void *user;
} nn_generate_params;

nn_generate_params nn_generate_default_params(void);

/* Generates after prompt[n_prompt] into out (room for max_new_tokens ids). *n_out receives the
 * count; generation ends early at EOS (which is kept as the last id) or at the model's context. */
int nn_generate(const nn_model *model, const int32_t *prompt, int n_prompt,
                const nn_generate_params *params, int32_t *out, int *n_out, nn_err *err);

/* The same on a context (its state and tables reused; the same tokens). */
NNTERP_API int nn_generate_ctx(nn_context *ctx, const int32_t *prompt, int n_prompt,
                               const nn_generate_params *params, int32_t *out, int *n_out,
                               nn_err *err);

/* The index of the largest value (the first one on ties, as torch.argmax and llama2.c do). */
int nn_argmax(const float *x, int n);

#endif
