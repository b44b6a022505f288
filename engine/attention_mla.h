/* Multi-head latent attention (DeepSeek-V2/V3): the projections that turn the attention input
 * into ordinary per-head queries, keys and values, which the one attention of forward_attention.c then
 * attends (see docs/engine.md, "Multi-head latent attention").
 *
 * Per token x (the attention input, attentions_input.i):
 *   q        = q_b(rms(q_a(x)))             or q_proj(x) when q_lora_rank is null, [H, dn + dr]
 *   [c | kr] = kv_a(x)                       c: the latent [kv_lora_rank]; kr [dr], for all heads
 *   [kn | v] = kv_b(rms(c)) per head         kn: [dn], v: [dv]
 *   key_h    = [kn_h | rope(kr)],  query_h = [q_h[:dn] | rope(q_h[dn:])]
 * so head h's score is (q_h . key_h) * scale. dn = qk_nope_head_dim, dr = qk_rope_head_dim,
 * dv = v_head_dim. */
#ifndef NN_ATTENTION_MLA_H
#define NN_ATTENTION_MLA_H

#include "forward.h"

typedef struct nn_mla_scratch nn_mla_scratch;

int nn_mla_scratch_init(nn_mla_scratch **out, const nn_model *model, int max_tokens, nn_err *err);
void nn_mla_scratch_free(nn_mla_scratch *scratch);

/* Queries q (N, H*(dn+dr)), keys k (N, H*(dn+dr)) and values v (N, H*dv) of layer `layer` from
 * its attention input xn (N, d), rotary embedding applied at each sequence's positions. */
void nn_mla_project(const nn_model *model, const nn_state *state, nn_mla_scratch *scratch,
                    const nn_batch *batch, int layer, const float *xn, float *q, float *k,
                    float *v);

#endif
