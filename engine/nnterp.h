/* nnterp.h — the public C API of the nnterp engine. Include this one header.
 *
 * nnterp gives every supported transformer the same standardized view as the Python library
 * nnterp: hook points with fixed names, and the interpretability operations built on them.
 *
 * DATA MODEL
 *   nn_model      a loaded checkpoint: config (sizes), architecture row, weights (memory-mapped).
 *                 nn_model_load("dir" | "org/name" (HF cache) | "model.bin" (llama2.c), &m, &err)
 *   nn_tokenizer  tokenizer.json or llama2.c tokenizer.bin; usable without weights.
 *   nn_batch      prompts packed back to back as token ids, [n_tokens]; sequence s is
 *                 tokens[offsets[s] .. offsets[s+1]). No padding: each attends only to itself.
 *   nn_state      activation buffers and KV cache for a maximum batch shape (nn_state_init).
 *   nn_hookset    callbacks attached to hook points, built once, passed to each forward call.
 *   nn_context    a model's state, thread pool and rotary tables, made once and reused by the
 *                 toolkit's _ctx functions, generation and nn_context_forward (context.h).
 *
 * HOOK POINTS (names as in docs/spec.md §2; per prompt of T tokens, hidden size d)
 *   token_embeddings [T,d]   layers_input.i [T,d]        attentions_input.i [T,d]
 *   attention_probabilities.i [heads,T,T]                attentions_output.i [T,d]
 *   mlps_input.i [T,d]       mlps_output.i [T,d]         layers_output.i [T,d]
 *   ln_final [T,d]           logits [T,V]                next_token_probs [V]
 * A hook gets an nn_hook_view of the live buffer (the whole packed batch for per-token points) and
 * may read it, overwrite it, add to it, or return NN_HOOK_STOP to end the pass early. Unhooked
 * sites cost one branch. layers_output.i and layers_input.(i+1) are the same values.
 *
 * OPERATIONS (toolkit.h): nn_logit_lens, nn_patchscope (+ nn_repeat_prompt), nn_steer_add
 * (+ nn_npy_read_vector, nn_contrast_vector), nn_first_tokens + nn_next_token_probs (target
 * probabilities), nn_activation_patch, nn_skip_add, nn_attn_edit_add; nn_generate (generate.h);
 * batched, the same bits: nn_generate_batch_ctx (generate_batch.h), nn_patchscope_batch_ctx
 * (patchscope_batch.h).
 *
 * LINKING
 *   pkg-config --cflags --libs nnterp (the shared libnnterp.so) or the static nn_engine + nn_base.
 *   From C++ the header is wrapped in extern "C". nn_model and nn_hookset (and the model's parts)
 *   are opaque here: use the accessors of api.h (nn_model_n_layers, nn_model_cfg,
 *   nn_hookset_create ...). Only the project's own build (NNTERP_INTERNAL) sees their fields.
 *   NNTERP_VERSION_* give the version of the headers, nn_version_number() the library's.
 *   The pipeline plumbing (nn_executor, nn_forward_range) is internal (stage.h, not installed).
 *
 * CONVENTIONS
 *   - Functions that can fail return NN_OK (0) or NN_ERR and fill a caller-owned nn_err whose
 *     message names the file and the field. The library never prints and never exits.
 *   - x_init / x_load allocate, x_free releases (NULL is fine); a failed init leaves nothing.
 *   - Results are caller-owned and documented at each function.
 *
 * EXAMPLE: the logit lens of a prompt
 *
 *   nn_err err; nn_model *m; nn_tokenizer *tok; nn_ids ids = {0};
 *   if (nn_model_load("models/demo", &m, &err) || nn_tokenizer_load("models/demo", &tok, &err) ||
 *       nn_tokenizer_encode(tok, "The capital of France is", 24, true, &ids, &err))
 *       die(err.msg);
 *   nn_prompt p = {ids.ids, (int)ids.n};
 *   nn_lens_params lp = {.top_k = 5};               // every layer, last position
 *   nn_lens_result r;
 *   if (nn_logit_lens(m, &p, 1, &lp, &r, &err)) die(err.msg);
 *   for (int l = 0; l < r.n_layers; l++)             // r.top_ids[l * r.top_k] is layer l's top-1
 *       printf("%d %d %.3f\n", r.layers[l], r.top_ids[l * r.top_k], r.top_probs[l * r.top_k]);
 *   nn_lens_result_free(&r); nn_ids_free(&ids); nn_tokenizer_free(tok); nn_model_free(m);
 */
#ifndef NNTERP_H
#define NNTERP_H

#include "nnterp_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "api.h"
#include "context.h"
#include "forward.h"
#include "generate.h"
#include "generate_batch.h"
#include "hooks.h"
#include "model.h"
#include "patchscope_batch.h"
#include "tokenizer.h"
#include "toolkit.h"

#ifdef __cplusplus
}
#endif

#endif
