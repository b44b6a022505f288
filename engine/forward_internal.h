/* Pieces of the forward pass (forward.c) that the engine's other files reuse, so that every matrix
 * product goes through the one linear() (batch-invariant padding, weight dtypes) and every rotary
 * embedding through the one table. Not part of the public API. */
#ifndef NN_FORWARD_INTERNAL_H
#define NN_FORWARD_INTERNAL_H

#include "forward.h"

/* y (n, W->n_out) = x (n, W->n_in) W + b, the same bits for a row whatever n is. */
void nn_fw_linear(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                  size_t ldy, int n);
/* The rotary tables: (max_positions, rotary_dim / 2) cos and sin, yarn's factor included. */
void nn_fw_rope_tables(const nn_state *s, const float **cos_t, const float **sin_t);

#endif
