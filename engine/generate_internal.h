/* What the one-prompt and the batched generator share, so that both choose tokens alike. */
#ifndef NN_GENERATE_INTERNAL_H
#define NN_GENERATE_INTERNAL_H

#include "generate.h"

/* The sampler's starting state for a seed (0 has a fixed replacement: xorshift needs a nonzero). */
uint64_t nn_sample_seed(uint64_t seed);
/* Bytes of scratch nn_sample_token needs for a vocabulary of V. */
size_t nn_sample_scratch_bytes(int V);
/* Chooses the next id from logits[V] (overwritten): argmax when temperature <= 0, else a draw from
 * the softmax at that temperature, truncated to the top_p nucleus. */
int nn_sample_token(float *logits, int V, const nn_generate_params *p, uint64_t *rng,
                    void *scratch);

#endif
