#define _GNU_SOURCE
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_ext.h"
#include "nn_json.h"

/* ---- The architecture table ------------------------------------------------------------------ */

/* Hugging Face Llama-style names, shared by most families that came after it. */
#define HF_EMB_NAMES                                                                               \
    .prefix = "", .tok_emb = "model.embed_tokens", .final_norm = "model.norm", .head = "lm_head"
#define HF_ATTN_NAMES                                                                              \
    .attn_norm = "model.layers.%d.input_layernorm", .q = "model.layers.%d.self_attn.q_proj",       \
    .k = "model.layers.%d.self_attn.k_proj", .v = "model.layers.%d.self_attn.v_proj",              \
    .o = "model.layers.%d.self_attn.o_proj"
#define HF_MLP_NAMES                                                                               \
    .mlp_norm = "model.layers.%d.post_attention_layernorm",                                        \
    .gate = "model.layers.%d.mlp.gate_proj", .up = "model.layers.%d.mlp.up_proj",                  \
    .down = "model.layers.%d.mlp.down_proj"
#define LLAMA_NAMES HF_EMB_NAMES, HF_ATTN_NAMES, HF_MLP_NAMES

static const nn_arch arch_table[] = {
    {
        .model_type = "gpt2",
        .family = "GPT-2",
        .norm = NN_NORM_LAYERNORM,
        .pos = NN_POS_LEARNED,
        .linear_in_major = true,
        .fused_qkv = true,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .norm_bias = true,
        .tie_default = true,
        .default_act = "gelu_new",
        .notes = "learned absolute positions: layers_input.0 = token_embeddings + wpe[position]; "
                 "Conv1D weights stored [in, out]; fused c_attn [q|k|v]; tied head",
        .prefix = "transformer.",
        .tok_emb = "wte",
        .pos_emb = "wpe",
        .final_norm = "ln_f",
        .attn_norm = "h.%d.ln_1",
        .mlp_norm = "h.%d.ln_2",
        .qkv = "h.%d.attn.c_attn",
        .o = "h.%d.attn.c_proj",
        .up = "h.%d.mlp.c_fc",
        .down = "h.%d.mlp.c_proj",
    },
    {
        .model_type = "llama",
        .family = "Llama",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "standard pre-norm block (RMSNorm, RoPE, SiLU-gated MLP)",
        LLAMA_NAMES,
    },
    {
        .model_type = "mistral",
        .family = "Mistral",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "standard pre-norm block; sliding-window attention when the config sets "
                 "sliding_window (attention_probabilities are zero outside the window)",
        LLAMA_NAMES,
    },
    {
        .model_type = "qwen2",
        .family = "Qwen2",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .qkv_bias = true,
        .default_act = "silu",
        .notes = "standard pre-norm block with q/k/v biases",
        LLAMA_NAMES,
    },
    {
        .model_type = "gemma",
        .family = "Gemma",
        .norm = NN_NORM_RMSNORM,
        .norm_unit_offset = true,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .emb_scale_sqrt_d = true,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .act_is_hidden_activation = true,
        .notes = "RMSNorm scales by (1 + w); layers_input.0 = token_embeddings * sqrt(d) "
                 "(token_embeddings is the unscaled lookup); GeGLU MLP (gelu tanh, from "
                 "hidden_activation); tied head",
        LLAMA_NAMES,
    },
    {
        .model_type = "gemma2",
        .family = "Gemma-2",
        .sliding_window_pattern = 2,
        .norm = NN_NORM_RMSNORM,
        .norm_unit_offset = true,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .emb_scale_sqrt_d = true,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .act_is_hidden_activation = true,
        .notes = "sandwich norms: attentions_output.i is the attention output BEFORE "
                 "post_attention_layernorm, mlps_input.i is pre_feedforward_layernorm's output, "
                 "mlps_output.i is the MLP output BEFORE post_feedforward_layernorm; the residual "
                 "adds the post-normed values, so layers_output.i != layers_input.i + "
                 "attentions_output.i + mlps_output.i. RMSNorm (1 + w); layers_input.0 = "
                 "token_embeddings * sqrt(d); scores scaled by query_pre_attn_scalar^-0.5 and "
                 "soft-capped tanh(s/c)*c before masking; sliding window on even layers only; "
                 "logits (and the logit lens) soft-capped tanh(x/c)*c; tied head",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .post_attn_norm = "model.layers.%d.post_attention_layernorm",
        .mlp_norm = "model.layers.%d.pre_feedforward_layernorm",
        .post_mlp_norm = "model.layers.%d.post_feedforward_layernorm",
        .gate = "model.layers.%d.mlp.gate_proj",
        .up = "model.layers.%d.mlp.up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
    {
        .model_type = "gpt_neox",
        .family = "GPT-NeoX",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .fused_qkv = true,
        .qkv_layout = NN_QKV_PER_HEAD,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .parallel = true,
        .default_act = "gelu",
        .notes = "parallel block (use_parallel_residual): layers_output.i = layers_input.i + "
                 "attentions_output.i + mlps_output.i, and mlps_input.i = "
                 "post_attention_layernorm(layers_input.i), not of the residual after attention; "
                 "rotary on the first rotary_pct of each head's dims (half-split inside them); "
                 "fused query_key_value laid out per head [q|k|v]",
        .prefix = "gpt_neox.",
        .tok_emb = "embed_in",
        .final_norm = "final_layer_norm",
        .head = "embed_out",
        .attn_norm = "layers.%d.input_layernorm",
        .mlp_norm = "layers.%d.post_attention_layernorm",
        .qkv = "layers.%d.attention.query_key_value",
        .o = "layers.%d.attention.dense",
        .up = "layers.%d.mlp.dense_h_to_4h",
        .down = "layers.%d.mlp.dense_4h_to_h",
    },
    {
        .model_type = "gptj",
        .family = "GPT-J",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .rope_interleaved = true,
        .mlp_bias = true,
        .parallel = true,
        .shared_norm = true,
        .head_bias = true,
        .default_act = "gelu_new",
        .notes = "parallel block on one LayerNorm: mlps_input.i = attentions_input.i, "
                 "layers_output.i = layers_input.i + attentions_output.i + mlps_output.i; rotary "
                 "on the first rotary_dim dims, interleaved (adjacent pairs 2k, 2k+1); lm_head "
                 "has a bias (in the logits and the logit lens)",
        .prefix = "transformer.",
        .tok_emb = "wte",
        .final_norm = "ln_f",
        .head = "lm_head",
        .attn_norm = "h.%d.ln_1",
        .q = "h.%d.attn.q_proj",
        .k = "h.%d.attn.k_proj",
        .v = "h.%d.attn.v_proj",
        .o = "h.%d.attn.out_proj",
        .up = "h.%d.mlp.fc_in",
        .down = "h.%d.mlp.fc_out",
    },
    {
        .model_type = "opt",
        .family = "OPT",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_LEARNED,
        .pos_offset = 2,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .tie_default = true,
        .default_act = "relu",
        .notes = "learned positions with offset 2: layers_input.0 = token_embeddings + "
                 "embed_positions[position + 2]; mlps_input.i is the layer's final_layer_norm, "
                 "mlps_output.i is fc2's output (OPT has no MLP module); tied head",
        .prefix = "model.decoder.",
        .tok_emb = "embed_tokens",
        .pos_emb = "embed_positions",
        .final_norm = "final_layer_norm",
        .head = "lm_head",
        .attn_norm = "layers.%d.self_attn_layer_norm",
        .mlp_norm = "layers.%d.final_layer_norm",
        .q = "layers.%d.self_attn.q_proj",
        .k = "layers.%d.self_attn.k_proj",
        .v = "layers.%d.self_attn.v_proj",
        .o = "layers.%d.self_attn.out_proj",
        .up = "layers.%d.fc1",
        .down = "layers.%d.fc2",
    },
    {
        .model_type = "phi",
        .family = "Phi",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .parallel = true,
        .shared_norm = true,
        .head_bias = true,
        .default_act = "gelu_new",
        .notes = "parallel block on one LayerNorm: mlps_input.i = attentions_input.i, "
                 "layers_output.i = layers_input.i + attentions_output.i + mlps_output.i; rotary "
                 "on the first partial_rotary_factor of each head's dims; lm_head has a bias",
        .prefix = "model.",
        .tok_emb = "embed_tokens",
        .final_norm = "final_layernorm",
        .head = "lm_head",
        .attn_norm = "layers.%d.input_layernorm",
        .q = "layers.%d.self_attn.q_proj",
        .k = "layers.%d.self_attn.k_proj",
        .v = "layers.%d.self_attn.v_proj",
        .o = "layers.%d.self_attn.dense",
        .up = "layers.%d.mlp.fc1",
        .down = "layers.%d.mlp.fc2",
    },
    {
        .model_type = "phi3",
        .family = "Phi-3",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .fused_qkv = true,
        .default_act = "silu",
        .notes = "standard pre-norm block; fused qkv_proj [q|k|v] and gate_up_proj [gate|up]; "
                 "partial rotary and longrope scaling where the config says so (Phi-4-mini: "
                 "short factors while a sequence ends within original_max_position_embeddings, "
                 "long factors beyond, decided per prompt, where Hugging Face decides per "
                 "batch)",
        HF_EMB_NAMES,
        .attn_norm = "model.layers.%d.input_layernorm",
        .qkv = "model.layers.%d.self_attn.qkv_proj",
        .o = "model.layers.%d.self_attn.o_proj",
        .mlp_norm = "model.layers.%d.post_attention_layernorm",
        .gate_up = "model.layers.%d.mlp.gate_up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
    {
        .model_type = "stablelm",
        .family = "StableLM",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .shared_norm = true,
        .default_act = "silu",
        .notes = "LayerNorm with bias; rotary on the first partial_rotary_factor of each head's "
                 "dims (half-split inside them); q/k/v biases with use_qkv_bias; a parallel block "
                 "on one norm with use_parallel_residual",
        LLAMA_NAMES,
    },
    {
        .model_type = "olmo",
        .family = "OLMo",
        .norm = NN_NORM_LAYERNORM,
        .norm_no_weight = true,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "every norm (the final one included) is a LayerNorm without weight or bias, "
                 "eps 1e-5; otherwise a standard pre-norm block",
        LLAMA_NAMES,
    },
    {
        .model_type = "starcoder2",
        .family = "StarCoder2",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .notes = "LayerNorm with bias; biases on q/k/v/o and the MLP (use_bias); plain MLP "
                 "c_fc -> act -> c_proj",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .mlp_norm = "model.layers.%d.post_attention_layernorm",
        .up = "model.layers.%d.mlp.c_fc",
        .down = "model.layers.%d.mlp.c_proj",
    },
    {
        .model_type = "mixtral",
        .family = "Mixtral",
        .moe_renormalize = true,
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "sparse MoE: mlps_output.i is the MoE block's output (router softmax over the "
                 "experts, top-k, the k weights renormalised to sum 1, sum of w * SiLU-GLU "
                 "expert); router_probabilities.i [T, n_experts] is the router softmax before "
                 "top-k (a hook may edit it: routing uses what it leaves)",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .mlp_norm = "model.layers.%d.post_attention_layernorm",
        .router = "model.layers.%d.block_sparse_moe.gate",
        .expert_gate = "model.layers.%d.block_sparse_moe.experts.%d.w1",
        .expert_up = "model.layers.%d.block_sparse_moe.experts.%d.w3",
        .expert_down = "model.layers.%d.block_sparse_moe.experts.%d.w2",
    },
    {
        .model_type = "qwen2_moe",
        .family = "Qwen2-MoE",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .qkv_bias = true,
        .default_act = "silu",
        .notes = "sparse MoE: mlps_output.i is the MoE block's output (router softmax, top-k, "
                 "NOT renormalised unless norm_topk_prob, sum of w * expert, plus the shared "
                 "expert scaled by sigmoid(shared_expert_gate(x))); router_probabilities.i "
                 "[T, n_experts] is the router softmax before top-k (a hook may edit it: routing "
                 "uses what it leaves); q/k/v biases",
        LLAMA_NAMES,
        .router = "model.layers.%d.mlp.gate",
        .expert_gate = "model.layers.%d.mlp.experts.%d.gate_proj",
        .expert_up = "model.layers.%d.mlp.experts.%d.up_proj",
        .expert_down = "model.layers.%d.mlp.experts.%d.down_proj",
        .shared_gate = "model.layers.%d.mlp.shared_expert.gate_proj",
        .shared_up = "model.layers.%d.mlp.shared_expert.up_proj",
        .shared_down = "model.layers.%d.mlp.shared_expert.down_proj",
        .shared_expert_gate = "model.layers.%d.mlp.shared_expert_gate",
    },
    {
        .model_type = "gpt_bigcode",
        .family = "GPT-BigCode",
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_LEARNED,
        .fused_qkv = true,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .notes = "learned absolute positions (layers_input.0 = token_embeddings + wpe[position]); "
                 "multi-query: fused c_attn [q | k (one head) | v (one head)] (per head [q|k|v] "
                 "without multi_query); nn.Linear weights [out, in]; tied head",
        .prefix = "transformer.",
        .tok_emb = "wte",
        .pos_emb = "wpe",
        .final_norm = "ln_f",
        .head = "lm_head",
        .attn_norm = "h.%d.ln_1",
        .mlp_norm = "h.%d.ln_2",
        .qkv = "h.%d.attn.c_attn",
        .o = "h.%d.attn.c_proj",
        .up = "h.%d.mlp.c_fc",
        .down = "h.%d.mlp.c_proj",
    },
    {
        .model_type = "falcon",
        .family = "Falcon",
        .default_context = 2048,
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ROPE,
        .fused_qkv = true,
        .qkv_layout = NN_QKV_GROUPED,
        .parallel = true,
        .tie_default = true,
        .default_act = "gelu",
        .notes = "parallel block: layers_output.i = layers_input.i + attentions_output.i + "
                 "mlps_output.i; new_decoder_architecture: attentions_input.i = ln_attn(x), "
                 "mlps_input.i = ln_mlp(x) (one shared input_layernorm otherwise); fused "
                 "query_key_value grouped per kv head [q..q|k|v]",
        .prefix = "transformer.",
        .tok_emb = "word_embeddings",
        .final_norm = "ln_f",
        .head = "lm_head",
        .attn_norm = "h.%d.ln_attn|h.%d.input_layernorm",
        .mlp_norm = "h.%d.ln_mlp|h.%d.post_attention_layernorm",
        .qkv = "h.%d.self_attention.query_key_value",
        .o = "h.%d.self_attention.dense",
        .up = "h.%d.mlp.dense_h_to_4h",
        .down = "h.%d.mlp.dense_4h_to_h",
    },
    {
        .model_type = "bloom",
        .family = "BLOOM",
        .default_context = 2048,
        .norm = NN_NORM_LAYERNORM,
        .norm_bias = true,
        .pos = NN_POS_ALIBI,
        .fused_qkv = true,
        .qkv_layout = NN_QKV_PER_HEAD,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .residual_in_modules = true,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .notes = "ALiBi (no position embeddings; score bias slope_h * key position); "
                 "layers_input.0 = word_embeddings_layernorm(token_embeddings). The attention "
                 "and MLP modules add the residual themselves: attentions_output.i = "
                 "layers_input.i + attention, mlps_input.i = "
                 "post_attention_layernorm(attentions_output.i), and mlps_output.i = "
                 "attentions_output.i + MLP is layers_output.i (the same buffer: an edit to "
                 "either is an edit to the residual stream); fused query_key_value per head "
                 "[q|k|v]; tied head",
        .prefix = "transformer.",
        .tok_emb = "word_embeddings",
        .emb_norm = "word_embeddings_layernorm",
        .final_norm = "ln_f",
        .attn_norm = "h.%d.input_layernorm",
        .mlp_norm = "h.%d.post_attention_layernorm",
        .qkv = "h.%d.self_attention.query_key_value",
        .o = "h.%d.self_attention.dense",
        .up = "h.%d.mlp.dense_h_to_4h",
        .down = "h.%d.mlp.dense_4h_to_h",
    },
    {
        .model_type = "cohere",
        .family = "Cohere",
        .norm = NN_NORM_LAYERNORM,
        .pos = NN_POS_ROPE,
        .rope_interleaved = true,
        .gated_mlp = true,
        .parallel = true,
        .shared_norm = true,
        .tie_default = true,
        .default_act = "silu",
        .notes = "parallel block on one norm: mlps_input.i = attentions_input.i, "
                 "layers_output.i = layers_input.i + attentions_output.i + mlps_output.i; the "
                 "norm is a mean-centred LayerNorm with weight and no bias; rotary interleaved "
                 "(adjacent pairs); logits = lm_head(x) * logit_scale, and the logit lens applies "
                 "the same scale; tied head",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .gate = "model.layers.%d.mlp.gate_proj",
        .up = "model.layers.%d.mlp.up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },

    /* ---- Families of 2025-26, checked against transformers 5 (tests/reference, made by
     * tools/reference/make_reference.py). Phi-4-mini is the phi3 row (partial rotary, longrope),
     * Llama 3.2 the llama row, Mistral Nemo / Small 3 the mistral row (explicit head_dim). ---- */
    {
        .model_type = "qwen3",
        .family = "Qwen3",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "pre-norm block with per-head q/k RMSNorm: q_norm and k_norm (over head_dim, "
                 "weights shared by the heads) after the q/k projections, before rotary; "
                 "attentions_input.i is still the input_layernorm output",
        LLAMA_NAMES,
        .q_norm = "model.layers.%d.self_attn.q_norm",
        .k_norm = "model.layers.%d.self_attn.k_norm",
    },
    {
        .model_type = "qwen3_moe",
        .family = "Qwen3-MoE",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "Qwen3's per-head q/k RMSNorm before rotary; sparse MoE: mlps_output.i is the "
                 "MoE block's output (router softmax, top-k, renormalised when norm_topk_prob, "
                 "sum of w * expert; no shared expert); layer i is sparse when it is not in "
                 "mlp_only_layers and (i + 1) % decoder_sparse_step == 0, else a dense MLP of "
                 "intermediate_size; router_probabilities.i [T, n_experts] is the router softmax "
                 "before top-k, on sparse layers only",
        LLAMA_NAMES,
        .q_norm = "model.layers.%d.self_attn.q_norm",
        .k_norm = "model.layers.%d.self_attn.k_norm",
        .router = "model.layers.%d.mlp.gate",
        .expert_gate = "model.layers.%d.mlp.experts.%d.gate_proj",
        .expert_up = "model.layers.%d.mlp.experts.%d.up_proj",
        .expert_down = "model.layers.%d.mlp.experts.%d.down_proj",
    },
    {
        .model_type = "gemma3_text",
        .family = "Gemma 3 (text)",
        .sliding_window_pattern = 6,
        .norm = NN_NORM_RMSNORM,
        .norm_unit_offset = true,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .emb_scale_sqrt_d = true,
        .tie_default = true,
        .default_act = "gelu_pytorch_tanh",
        .act_is_hidden_activation = true,
        .configure = nn_configure_gemma3,
        .notes = "Gemma-2's sandwich norms (attentions_output.i before post_attention_layernorm, "
                 "mlps_input.i = pre_feedforward_layernorm's output, mlps_output.i before "
                 "post_feedforward_layernorm; the residual adds the post-normed values), plus "
                 "per-head q/k RMSNorm (1 + w) before rotary; sliding-window and global layers "
                 "interleaved (layer_types, else every sliding_window_pattern-th layer is "
                 "global), the sliding ones rotating with the local theta "
                 "(rope_local_base_freq) unscaled, the global ones with rope_theta and its "
                 "scaling; scores scaled by query_pre_attn_scalar^-0.5; layers_input.0 = "
                 "token_embeddings * sqrt(d) (token_embeddings is the unscaled lookup, although "
                 "Hugging Face's embedding module scales inside itself); RMSNorm (1 + w); GeGLU; "
                 "tied head",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .q_norm = "model.layers.%d.self_attn.q_norm",
        .k_norm = "model.layers.%d.self_attn.k_norm",
        .post_attn_norm = "model.layers.%d.post_attention_layernorm",
        .mlp_norm = "model.layers.%d.pre_feedforward_layernorm",
        .post_mlp_norm = "model.layers.%d.post_feedforward_layernorm",
        .gate = "model.layers.%d.mlp.gate_proj",
        .up = "model.layers.%d.mlp.up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
    {
        .model_type = "olmo2",
        .family = "OLMo 2",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "post-norm branches and no pre-norm: x += post_attention_layernorm(attn(x)); x "
                 "+= post_feedforward_layernorm(mlp(x)). attentions_input.i is therefore a copy "
                 "of layers_input.i, and mlps_input.i the residual stream after the attention "
                 "add (editing either changes that branch's input only); attentions_output.i and "
                 "mlps_output.i are the branch outputs before their post norms. q/k RMSNorm over "
                 "the whole projection (all heads at once) before rotary",
        HF_EMB_NAMES,
        .q = "model.layers.%d.self_attn.q_proj",
        .k = "model.layers.%d.self_attn.k_proj",
        .v = "model.layers.%d.self_attn.v_proj",
        .o = "model.layers.%d.self_attn.o_proj",
        .q_norm = "model.layers.%d.self_attn.q_norm",
        .k_norm = "model.layers.%d.self_attn.k_norm",
        .qk_norm_whole = true,
        .no_pre_norm = true,
        .post_attn_norm = "model.layers.%d.post_attention_layernorm",
        .post_mlp_norm = "model.layers.%d.post_feedforward_layernorm",
        .gate = "model.layers.%d.mlp.gate_proj",
        .up = "model.layers.%d.mlp.up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
    {
        .model_type = "olmo3",
        .family = "OLMo 3",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .notes = "OLMo 2's block (no pre-norm, post-normed branches, q/k RMSNorm over the whole "
                 "projection; attentions_input.i is a copy of layers_input.i) with sliding-window "
                 "layers where layer_types says so (by default three of every four)",
        HF_EMB_NAMES,
        .q = "model.layers.%d.self_attn.q_proj",
        .k = "model.layers.%d.self_attn.k_proj",
        .v = "model.layers.%d.self_attn.v_proj",
        .o = "model.layers.%d.self_attn.o_proj",
        .q_norm = "model.layers.%d.self_attn.q_norm",
        .k_norm = "model.layers.%d.self_attn.k_norm",
        .qk_norm_whole = true,
        .no_pre_norm = true,
        .sliding_window_pattern = 4,
        .post_attn_norm = "model.layers.%d.post_attention_layernorm",
        .post_mlp_norm = "model.layers.%d.post_feedforward_layernorm",
        .gate = "model.layers.%d.mlp.gate_proj",
        .up = "model.layers.%d.mlp.up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
    {
        .model_type = "smollm3",
        .family = "SmolLM3",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .configure = nn_configure_smollm3,
        .notes = "standard pre-norm block, except that NoPE layers (no_rope_layers[i] = 0; by "
                 "default every 4th layer) apply no rotary embedding to q and k",
        LLAMA_NAMES,
    },
    {
        .model_type = "granite",
        .family = "Granite",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .default_act = "silu",
        .configure = nn_configure_granite,
        .notes = "pre-norm block with four multipliers: layers_input.0 = token_embeddings * "
                 "embedding_multiplier; scores scaled by attention_multiplier (not "
                 "1/sqrt(head_dim)); the residual adds attentions_output.i and mlps_output.i "
                 "times residual_multiplier (the hooks see them unscaled, as Hugging Face's "
                 "modules output them); logits = lm_head(x) / logits_scaling, and the logit lens "
                 "divides too",
        LLAMA_NAMES,
    },
    /* ---- gpt-oss and DeepSeek-V3 ---- */
    {
        .model_type = "gpt_oss",
        .family = "gpt-oss",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .qkv_bias = true,
        .o_bias = true,
        .moe_renormalize = true,
        .default_act = "silu",
        .notes = "attention sinks: each head has a learned sink logit that joins every softmax row "
                 "and takes its share of the mass without contributing a value; "
                 "attention_probabilities.i are the probabilities of the real keys with the sink's "
                 "column dropped (as Hugging Face returns them), so a row sums to 1 - p(sink), not "
                 "1. Sliding window on the layers config layer_types names sliding_attention "
                 "(alternating), global on the others; q/k/v/o biases; rotary half-split with "
                 "yarn scaling (cos and sin carry its attention factor). Every layer is a MoE "
                 "block: router with bias, router_probabilities.i = softmax over all experts "
                 "(Hugging Face softmaxes only the top-k logits: the same weights, as the top-k "
                 "renormalised), experts with a fused interleaved gate_up and the clamped SwiGLU "
                 "(clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g), g = min(gate, limit), "
                 "down projection with bias; mlps_output.i is the MoE block's output",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .mlp_norm = "model.layers.%d.post_attention_layernorm",
        .attn_sinks = "model.layers.%d.self_attn.sinks",
        .router = "model.layers.%d.mlp.router",
        .router_bias = true,
        .expert_gate_up_stack = "model.layers.%d.mlp.experts.gate_up_proj",
        .expert_down_stack = "model.layers.%d.mlp.experts.down_proj",
        .expert_gate_up_interleaved = true,
        .configure = nn_configure_gpt_oss,
    },
    {
        .model_type = "deepseek_v3",
        .family = "DeepSeek-V3",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .moe_renormalize = true,
        .default_act = "silu",
        .notes = "multi-head latent attention: attentions_input.i is input_layernorm's output "
                 "(the input of q_a_proj/q_proj and kv_a_proj_with_mqa); queries q_b(rms(q_a(x))), "
                 "a shared latent c and one rotary key part kr = kv_a(x), per-head [k_nope | v] = "
                 "kv_b(rms(c)); attention_probabilities.i [n_heads, T, T] is the softmax of "
                 "q_h . [k_nope_h | rope(kr)] * scale per query head (every head has its own key, "
                 "no grouping; scale = qk_head_dim^-0.5 times yarn's mscale^2); "
                 "attentions_output.i is o_proj's output. The latent itself is not a hook point; "
                 "the KV cache holds the expanded per-head keys and values. Rotary on the last "
                 "qk_rope_head_dim dims of each query/key head (adjacent pairs with "
                 "rope_interleave). Layers l < first_k_dense_replace have a dense MLP; the others "
                 "a MoE block: router_probabilities.i are the sigmoid scores of the experts (each "
                 "in (0, 1), not a distribution); the choice is group-limited top-k on score + "
                 "e_score_correction_bias (the bias moves the choice only), the chosen scores "
                 "renormalised and times routed_scaling_factor, plus the shared experts "
                 "(unscaled); mlps_output.i is the MoE block's output",
        HF_EMB_NAMES,
        .attn_norm = "model.layers.%d.input_layernorm",
        .q = "model.layers.%d.self_attn.q_proj",
        .o = "model.layers.%d.self_attn.o_proj",
        .mla = true,
        .q_a = "model.layers.%d.self_attn.q_a_proj",
        .q_a_norm = "model.layers.%d.self_attn.q_a_layernorm",
        .q_b = "model.layers.%d.self_attn.q_b_proj",
        .kv_a = "model.layers.%d.self_attn.kv_a_proj_with_mqa",
        .kv_a_norm = "model.layers.%d.self_attn.kv_a_layernorm",
        .kv_b = "model.layers.%d.self_attn.kv_b_proj",
        HF_MLP_NAMES,
        .router_kind = NN_ROUTER_SIGMOID_GROUPED,
        .router = "model.layers.%d.mlp.gate",
        .router_score_bias = "model.layers.%d.mlp.gate.e_score_correction_bias",
        .expert_gate = "model.layers.%d.mlp.experts.%d.gate_proj",
        .expert_up = "model.layers.%d.mlp.experts.%d.up_proj",
        .expert_down = "model.layers.%d.mlp.experts.%d.down_proj",
        .shared_gate = "model.layers.%d.mlp.shared_experts.gate_proj",
        .shared_up = "model.layers.%d.mlp.shared_experts.up_proj",
        .shared_down = "model.layers.%d.mlp.shared_experts.down_proj",
        .configure = nn_configure_deepseek,
    },
    {
        .model_type = "glm4",
        .family = "GLM-4",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .rope_interleaved = true,
        .rotary_fraction_default = 0.5f,
        .gated_mlp = true,
        .qkv_bias = true,
        .o_bias_never = true,
        .default_act = "silu",
        .notes = "sandwich norms: attentions_output.i is o_proj's output BEFORE "
                 "post_self_attn_layernorm, mlps_input.i is post_attention_layernorm's output (the "
                 "norm before the MLP), mlps_output.i is the MLP output BEFORE post_mlp_layernorm; "
                 "the residual adds the post-normed values, so layers_output.i != layers_input.i "
                 "+ attentions_output.i + mlps_output.i. Rotary on the first partial_rotary_factor "
                 "(default 0.5) of each head's dims, adjacent pairs; q/k/v biases "
                 "(attention_bias), never on o_proj; fused gate_up_proj [gate | up]",
        HF_EMB_NAMES,
        HF_ATTN_NAMES,
        .post_attn_norm = "model.layers.%d.post_self_attn_layernorm",
        .mlp_norm = "model.layers.%d.post_attention_layernorm",
        .post_mlp_norm = "model.layers.%d.post_mlp_layernorm",
        .gate_up = "model.layers.%d.mlp.gate_up_proj",
        .down = "model.layers.%d.mlp.down_proj",
    },
};

const nn_arch *nn_arch_find(const char *model_type)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].model_type, model_type) == 0)
            return &arch_table[i];
    return NULL;
}

const char *nn_arch_supported(void)
{
    return "gpt2, llama, mistral, qwen2, gemma, gemma2, gpt_neox, gptj, opt, phi, phi3, stablelm, "
           "olmo, starcoder2, mixtral, qwen2_moe, gpt_bigcode, falcon, bloom, cohere, qwen3, "
           "qwen3_moe, gemma3_text, olmo2, olmo3, smollm3, granite, gpt_oss, deepseek_v3, glm4";
}

/* ---- config.json ------------------------------------------------------------------------------
 */

static int parse_activation(const char *name, const char *path, const char *field,
                            nn_activation *out, nn_err *err)
{
    if (!strcmp(name, "silu") || !strcmp(name, "swish"))
        *out = NN_ACT_SILU;
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") ||
             !strcmp(name, "gelu_fast"))
        *out = NN_ACT_GELU_TANH;
    else if (!strcmp(name, "gelu"))
        *out = NN_ACT_GELU;
    else if (!strcmp(name, "relu"))
        *out = NN_ACT_RELU;
    else
        return nn_fail(err,
                       "%s: field '%s' = '%s' is not supported (silu, gelu, gelu_new, "
                       "gelu_pytorch_tanh, relu)",
                       path, field, name);
    return NN_OK;
}

/* eos_token_id may be an integer or a list (Llama 3); the first is kept. */
static int parse_token_id(const cJSON *root, const char *key, const char *path, int *out,
                          nn_err *err)
{
    const cJSON *v = nn_json_get(root, key);
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v))
        return NN_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return nn_fail(err, "%s: field '%s' must be a non-negative token id", path, key);
    *out = (int)v->valuedouble;
    return NN_OK;
}

/* Families name the same quantity differently (hidden_size, n_embd, n_embed); the first key of a
 * list that is present and not null is used, and errors name that key. */
static const char *first_key(const cJSON *root, const char *const *keys)
{
    for (; *keys; keys++) {
        const cJSON *v = nn_json_get(root, *keys);
        if (v && !cJSON_IsNull(v))
            return *keys;
    }
    return NULL;
}

static int get_int(const cJSON *root, const char *const *keys, bool required, long fallback,
                   long min, long max, const char *path, long *out, const char **used, nn_err *err)
{
    const char *k = first_key(root, keys);
    if (used)
        *used = k ? k : keys[0];
    return nn_json_int(root, k ? k : keys[0], required, fallback, min, max, path, out, err);
}

static int get_double(const cJSON *root, const char *const *keys, double fallback, const char *path,
                      double *out, nn_err *err)
{
    const char *k = first_key(root, keys);
    return nn_json_double(root, k ? k : keys[0], false, fallback, path, out, err);
}

/* Options whose other value changes the math in a way no row expresses: refused, not ignored. */
static int refuse_unsupported(const cJSON *root, const char *path, const nn_arch *arch, bool *mxfp4,
                              nn_err *err)
{
    static const char *const must_be_false[] = {"scale_attn_by_inverse_layer_idx",
                                                "apply_residual_connection_post_layernorm",
                                                "qk_layernorm",
                                                "use_qk_norm",
                                                "alibi",
                                                "_remove_final_layer_norm"};
    static const char *const must_be_true[] = {"scale_attn_weights", "do_layer_norm_before",
                                               "layer_norm_elementwise_affine"};
    static const char *const must_be_null[] = {"clip_qkv"};
    bool b;
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++) {
        if (nn_json_bool(root, must_be_false[i], false, false, path, &b, err))
            return NN_ERR;
        if (b)
            return nn_fail(err, "%s: field '%s' = true is not supported", path, must_be_false[i]);
    }
    for (size_t i = 0; i < sizeof must_be_true / sizeof *must_be_true; i++) {
        if (nn_json_bool(root, must_be_true[i], false, true, path, &b, err))
            return NN_ERR;
        if (!b)
            return nn_fail(err, "%s: field '%s' = false is not supported", path, must_be_true[i]);
    }
    for (size_t i = 0; i < sizeof must_be_null / sizeof *must_be_null; i++) {
        const cJSON *v = nn_json_get(root, must_be_null[i]);
        if (v && !cJSON_IsNull(v))
            return nn_fail(err, "%s: field '%s' other than null is not supported", path,
                           must_be_null[i]);
    }
    const cJSON *quant = nn_json_get(root, "quantization_config");
    if (quant && !cJSON_IsNull(quant)) {
        const char *method = NULL;
        const cJSON *qm = cJSON_IsObject(quant) ? nn_json_get(quant, "quant_method") : NULL;
        if (cJSON_IsString(qm))
            method = qm->valuestring;
        /* gpt-oss's MXFP4 experts dequantize exactly at load (load_mxfp4_stack); the modules it
         * does not convert are stored as they are */
        if (method && !strcmp(method, "mxfp4") && arch->expert_gate_up_stack)
            *mxfp4 = true;
        else
            return nn_fail(err,
                           "%s: field 'quantization_config' (quant_method '%s') is not supported: "
                           "the engine computes from F32, F16 or BF16 weights (and gpt-oss's MXFP4 "
                           "experts); use a dequantized copy of the checkpoint",
                           path, method ? method : "?");
    }
    return NN_OK;
}

/* Falcon's block shape and qkv layout depend on its config (Falcon-7B, -40B, RW). */
static int configure_falcon(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    bool new_arch, multi_query, parallel;
    long kv, n_ln;
    if (nn_json_bool(root, "new_decoder_architecture", false, false, path, &new_arch, err) ||
        nn_json_bool(root, "multi_query", false, true, path, &multi_query, err) ||
        nn_json_bool(root, "parallel_attn", false, true, path, &parallel, err) ||
        nn_json_int(root, "num_kv_heads", false, c->n_heads, 1, 1 << 16, path, &kv, err) ||
        nn_json_int(root, "num_ln_in_parallel_attn", false, 2, 1, 2, path, &n_ln, err))
        return NN_ERR;
    if (new_arch) {
        c->n_kv_heads = (int)kv;
        c->qkv_layout = NN_QKV_GROUPED;
        c->parallel = true;
        c->shared_norm = n_ln == 1;
    } else {
        c->n_kv_heads = multi_query ? 1 : c->n_heads;
        c->qkv_layout = multi_query ? NN_QKV_GROUPED : NN_QKV_PER_HEAD;
        c->parallel = parallel;
        c->shared_norm = parallel;
    }
    return NN_OK;
}

int nn_config_from_hf(const char *json_text, const char *path, nn_config *c, nn_err *err)
{
    static const char *const K_D[] = {"hidden_size", "n_embd", "n_embed", NULL};
    static const char *const K_H[] = {"num_attention_heads", "n_head", NULL};
    static const char *const K_L[] = {"num_hidden_layers", "n_layer", NULL};
    static const char *const K_KV[] = {"num_key_value_heads", NULL};
    static const char *const K_V[] = {"vocab_size", NULL};
    static const char *const K_POS[] = {"max_position_embeddings", "n_positions", "seq_length",
                                        NULL};
    static const char *const K_FF[] = {"intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size",
                                       NULL};
    static const char *const K_HD[] = {"head_dim", NULL};
    static const char *const K_EPS[] = {"rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
                                        "norm_epsilon", NULL};
    static const char *const K_ACT[] = {"hidden_act", "activation_function", "activation", NULL};
    static const char *const K_ACT_GEMMA[] = {"hidden_activation", NULL};
    static const char *const K_PARALLEL[] = {"use_parallel_residual", "parallel_attn", NULL};
    static const char *const K_EXPERTS[] = {"num_local_experts", "num_experts", "n_routed_experts",
                                            NULL};

    memset(c, 0, sizeof *c);
    c->bos_token_id = c->eos_token_id = -1;
    size_t at;
    cJSON *root = nn_json_parse(json_text, strlen(json_text), &at);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nn_fail(err, "%s: malformed JSON near byte %zu (expected an object)", path, at);
    }
    int rc = NN_ERR;
    const char *model_type = NULL;
    if (nn_json_unique_keys(root, path, err) ||
        nn_json_string(root, "model_type", true, path, &model_type, err))
        goto done;
    const nn_arch *a = c->arch = nn_arch_find(model_type);
    if (!a) {
        nn_fail(err, "%s: model_type '%s' is not supported (supported: %s)", path, model_type,
                nn_arch_supported());
        goto done;
    }

    /* Sizes. */
    long d, h, kv, l, pos, vocab, ff, hd;
    const char *kd, *kh, *kkv;
    if (get_int(root, K_D, true, 0, 1, 1 << 20, path, &d, &kd, err) ||
        get_int(root, K_H, true, 0, 1, 1 << 16, path, &h, &kh, err) ||
        get_int(root, K_L, true, 0, 1, 1 << 16, path, &l, NULL, err) ||
        get_int(root, K_KV, false, h, 1, 1 << 16, path, &kv, &kkv, err) ||
        get_int(root, K_POS, a->default_context == 0, a->default_context, 1, 1 << 26, path, &pos,
                NULL, err) ||
        get_int(root, K_V, true, 0, 1, 1 << 26, path, &vocab, NULL, err) ||
        get_int(root, K_FF, a->gated_mlp, 4 * d, 1, 1 << 24, path, &ff, NULL, err))
        goto done;
    if (!first_key(root, K_HD) && d % h) {
        nn_fail(err, "%s: %s %ld is not a multiple of %s %ld", path, kd, d, kh, h);
        goto done;
    }
    if (get_int(root, K_HD, false, d / h, 1, 1 << 16, path, &hd, NULL, err))
        goto done;
    if (h % kv) {
        nn_fail(err, "%s: %s %ld is not a multiple of %s %ld", path, kh, h, kkv, kv);
        goto done;
    }
    /* Widths the loader computes in int (H * head_dim, the fused q|k|v rows): far above any real
     * model, far below INT_MAX. */
    if (h * hd > (1L << 24)) {
        nn_fail(err, "%s: %s %ld x head_dim %ld exceeds the limit of %ld", path, kh, h, hd,
                1L << 24);
        goto done;
    }
    c->d_model = (int)d;
    c->n_heads = (int)h;
    c->n_kv_heads = (int)kv;
    c->head_dim = (int)hd;
    c->n_layers = (int)l;
    c->max_positions = (int)pos;
    c->vocab_size = (int)vocab;
    c->d_ff = (int)ff;

    /* Norms, activation. */
    double eps;
    if (get_double(root, K_EPS, a->norm == NN_NORM_RMSNORM ? 1e-6 : 1e-5, path, &eps, err))
        goto done;
    c->norm_eps = a->norm_no_weight ? 1e-5f : (float)eps; /* OLMo's LayerNorm fixes eps */
    /* Gemma ignores hidden_act: hidden_activation, else gelu tanh (transformers PR 29402) */
    const char *const *act_keys = a->act_is_hidden_activation ? K_ACT_GEMMA : K_ACT;
    const char *act_key = first_key(root, act_keys), *act = NULL;
    if (act_key && nn_json_string(root, act_key, false, path, &act, err))
        goto done;
    if (parse_activation(act ? act : a->default_act, path, act_key ? act_key : act_keys[0], &c->act,
                         err))
        goto done;

    /* Biases: the family's defaults, then whatever the config says. */
    bool b;
    c->qkv_bias = a->qkv_bias;
    c->o_bias = a->o_bias;
    c->mlp_bias = a->mlp_bias;
    c->head_bias = a->head_bias;
    static const char *const all_bias_keys[] = {"use_bias", "enable_bias", "bias"};
    for (size_t i = 0; i < sizeof all_bias_keys / sizeof *all_bias_keys; i++)
        if (first_key(root, (const char *const[]){all_bias_keys[i], NULL})) {
            if (nn_json_bool(root, all_bias_keys[i], false, false, path, &b, err))
                goto done;
            c->qkv_bias = c->o_bias = c->mlp_bias = b;
        }
    if (nn_json_bool(root, "attention_bias", false, c->qkv_bias, path, &b, err))
        goto done;
    if (first_key(root, (const char *const[]){"attention_bias", NULL}))
        c->qkv_bias = c->o_bias = b;
    /* qkv_bias: Qwen2-MoE's switch since transformers 5 */
    if (nn_json_bool(root, "use_qkv_bias", false, c->qkv_bias, path, &c->qkv_bias, err) ||
        nn_json_bool(root, "qkv_bias", false, c->qkv_bias, path, &c->qkv_bias, err) ||
        nn_json_bool(root, "mlp_bias", false, c->mlp_bias, path, &c->mlp_bias, err))
        goto done;
    if (a->o_bias_never)
        c->o_bias = false;

    /* Block shape. */
    c->qkv_layout = a->qkv_layout;
    c->shared_norm = a->shared_norm;
    const char *kp = first_key(root, K_PARALLEL);
    if (nn_json_bool(root, kp ? kp : K_PARALLEL[0], false, a->parallel, path, &c->parallel, err))
        goto done;
    if (!strcmp(a->model_type, "gpt_bigcode")) {
        bool mq;
        if (nn_json_bool(root, "multi_query", false, true, path, &mq, err))
            goto done;
        c->n_kv_heads = mq ? 1 : c->n_heads;
        c->qkv_layout = mq ? NN_QKV_BLOCKS : NN_QKV_PER_HEAD;
    } else if (!strcmp(a->model_type, "falcon")) {
        if (configure_falcon(root, path, c, err))
            goto done;
    }
    if (c->n_heads % c->n_kv_heads) {
        nn_fail(err, "%s: %d attention heads are not a multiple of %d key/value heads", path,
                c->n_heads, c->n_kv_heads);
        goto done;
    }
    if (c->qkv_layout != NN_QKV_BLOCKS && a->linear_in_major) {
        nn_fail(err, "%s: internal: an interleaved qkv layout needs [out, in] weights", path);
        goto done;
    }
    if (!strcmp(a->model_type, "opt")) {
        long proj;
        if (nn_json_int(root, "word_embed_proj_dim", false, d, 1, 1 << 20, path, &proj, err))
            goto done;
        if (proj != d) {
            nn_fail(err, "%s: field 'word_embed_proj_dim' != hidden_size is not supported", path);
            goto done;
        }
    }
    if (refuse_unsupported(root, path, a, &c->experts_mxfp4, err))
        goto done;

    /* Positions and attention. */
    c->rope_theta = 10000.0;
    c->rotary_dim = c->head_dim;
    if (a->pos == NN_POS_ROPE) {
        if (nn_config_rope(root, path, c, err))
            goto done;
    } else {
        c->rotary_dim = 0;
    }
    long window = 0;
    bool use_window = true;
    /* 0 means none: transformers 5 writes Qwen2-MoE's null window as 0 */
    if (nn_json_int(root, "sliding_window", false, 0, 0, 1L << 30, path, &window, err) ||
        nn_json_bool(root, "use_sliding_window", false, true, path, &use_window, err))
        goto done;
    if (first_key(root, (const char *const[]){"use_sliding_window", NULL}) && use_window) {
        nn_fail(err, "%s: field 'use_sliding_window' = true is not supported yet", path);
        goto done;
    }
    c->sliding_window = use_window ? (int)window : 0;
    c->sliding_window_pattern = a->sliding_window_pattern;
    if (nn_config_layer_lists(root, path, c, err))
        goto done;
    double scalar, softcap, final_softcap, logit_scale;
    if (nn_json_double(root, "query_pre_attn_scalar", false, 0, path, &scalar, err) ||
        nn_json_double(root, "attn_logit_softcapping", false, 0, path, &softcap, err) ||
        nn_json_double(root, "final_logit_softcapping", false, 0, path, &final_softcap, err) ||
        nn_json_double(root, "logit_scale", false, 0, path, &logit_scale, err))
        goto done;
    if (scalar < 0 || softcap < 0 || final_softcap < 0) {
        nn_fail(err, "%s: query_pre_attn_scalar and soft-capping values must be positive", path);
        goto done;
    }
    c->attn_scale = scalar > 0 ? (float)pow(scalar, -0.5) : 0.0f;
    c->attn_softcap = (float)softcap;
    c->final_softcap = (float)final_softcap;
    c->logit_scale = (float)logit_scale;
    c->emb_scale = a->emb_scale_sqrt_d ? (float)sqrt((double)d) : 0.0f;

    /* Mixture of experts. */
    if (a->router) {
        long n_exp, k, moe_ff, shared_ff = 0, step;
        if (get_int(root, K_EXPERTS, false, 0, 0, 1 << 16, path, &n_exp, NULL, err) ||
            nn_json_int(root, "num_experts_per_tok", n_exp > 0, 0, 1, n_exp > 0 ? n_exp : 1, path,
                        &k, err) ||
            nn_json_int(root, "moe_intermediate_size", false, ff, 1, 1 << 24, path, &moe_ff, err) ||
            (a->shared_up && nn_json_int(root, "shared_expert_intermediate_size", false, 0, 0,
                                         1 << 24, path, &shared_ff, err)) ||
            nn_json_int(root, "decoder_sparse_step", false, 1, 1, 1 << 16, path, &step, err) ||
            nn_json_bool(root, "norm_topk_prob", false, a->moe_renormalize, path,
                         &c->norm_topk_prob, err))
            goto done;
        c->n_experts = (int)n_exp;
        c->n_experts_per_tok = (int)k;
        c->moe_d_ff = (int)moe_ff;
        c->shared_d_ff = (int)shared_ff;
        c->moe_layer_step = (int)step;
    }

    if (a->configure && a->configure(root, path, c, err))
        goto done;
    if (nn_json_bool(root, "tie_word_embeddings", false, a->tie_default, path, &c->tie_embeddings,
                     err) ||
        parse_token_id(root, "bos_token_id", path, &c->bos_token_id, err) ||
        parse_token_id(root, "eos_token_id", path, &c->eos_token_id, err))
        goto done;
    rc = NN_OK;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- Resolving a model argument ---------------------------------------------------------------
 */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *nn_model_resolve(const char *model, nn_err *err)
{
    if (nn_path_is_dir(model) || nn_path_is_file(model))
        return nn_strdup(model, err);
    if (!*model || model[0] == '/' || model[0] == '.' || ends_with(model, ".bin") ||
        strstr(model, "..") || strchr(model, '/') != strrchr(model, '/')) {
        nn_fail(err, "model '%s': no such file or directory", model);
        return NULL;
    }
    /* A hub id: ORG/NAME or NAME. */
    char cache[4096];
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    if (hub && *hub)
        snprintf(cache, sizeof cache, "%s", hub);
    else if (home && *home)
        snprintf(cache, sizeof cache, "%s/hub", home);
    else
        snprintf(cache, sizeof cache, "%s/.cache/huggingface/hub",
                 getenv("HOME") ? getenv("HOME") : "");
    char repo[1024] = "models--";
    size_t n = strlen(repo);
    for (const char *p = model; *p && n + 3 < sizeof repo; p++) {
        if (*p == '/') {
            repo[n++] = '-';
            repo[n++] = '-';
        } else {
            repo[n++] = *p;
        }
    }
    repo[n] = '\0';
    char path[8192];
    snprintf(path, sizeof path, "%s/%s/refs/main", cache, repo);
    char *rev = NULL;
    nn_err ignored;
    if (nn_file_read(path, 256, &rev, NULL, &ignored) != NN_OK) {
        nn_fail(
            err,
            "model '%s': not a file or directory, and not in the Hugging Face cache (looked for "
            "%s/%s/refs/main; set HF_HUB_CACHE or HF_HOME, or pass a checkpoint directory)",
            model, cache, repo);
        return NULL;
    }
    rev[strcspn(rev, " \r\n\t")] = '\0';
    snprintf(path, sizeof path, "%s/%s/snapshots/%s", cache, repo, rev);
    nn_free(rev);
    if (!nn_path_is_dir(path)) {
        nn_fail(err, "model '%s': the cache names revision snapshot %s, which is missing", model,
                path);
        return NULL;
    }
    return nn_strdup(path, err);
}

/* ---- Weights -----------------------------------------------------------------------------------
 */

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        nn_free(m->owned[i]);
    nn_free(m->owned);
    for (size_t i = 0; i < m->n_gemms; i++)
        nn_bf16_gemm_free(m->gemms[i]);
    nn_free(m->gemms);
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layers; i++)
            nn_free(m->layers[i].experts);
    nn_free(m->layers);
    nn_st_close(&m->archive);
    nn_file_unmap(&m->bin);
    nn_free(m->source);
    nn_free(m->config_json);
    nn_free(m);
}

static int keep_owned(nn_model *m, float *buf, nn_err *err)
{
    float **grown = nn_realloc(m->owned, (m->n_owned + 1) * sizeof *grown, err);
    if (!grown) {
        nn_free(buf);
        return NN_ERR;
    }
    m->owned = grown;
    m->owned[m->n_owned++] = buf;
    return NN_OK;
}

/* A buffer of n elements of elem bytes owned by the model (freed with it). */
static void *owned_elems(nn_model *m, size_t n, size_t elem, nn_err *err)
{
    float *buf = nn_malloc((n ? n : 1) * elem, err);
    if (!buf || keep_owned(m, buf, err) != NN_OK)
        return NULL;
    return buf;
}

/* A float32 buffer owned by the model (freed with it). */
static float *owned_floats(nn_model *m, size_t n, nn_err *err)
{
    return owned_elems(m, n, sizeof(float), err);
}

/* Which weights are scanned for NaN and infinity at load (NNTERP_CHECK_WEIGHTS):
 * unset: the tensors converted at load (F16/BF16, misaligned), whose bytes are read anyway;
 * "1": every tensor, memory-mapped F32 too — a pass over the whole file, which breaks the promise
 *      that a process touches only what it computes with (a pipeline stage would read every
 *      layer; a large checkpoint would be read whole at start-up), hence opt-in;
 * "0": none. */
enum { CHECK_NONE, CHECK_CONVERTED, CHECK_ALL };

static int check_weights(void)
{
    const char *e = getenv("NNTERP_CHECK_WEIGHTS");
    if (!e)
        return CHECK_CONVERTED;
    return strcmp(e, "0") == 0 ? CHECK_NONE : CHECK_ALL;
}

/* The index of the first NaN or infinity in x[n] (exponent bits all ones), or n when none. */
static size_t first_non_finite(const float *x, size_t n)
{
    const size_t block = 16384;
    for (size_t i = 0; i < n; i += block) {
        size_t end = n - i < block ? n : i + block;
        uint32_t bad = 0;
        for (size_t k = i; k < end; k++) {
            uint32_t u;
            memcpy(&u, &x[k], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (size_t k = i; k < end; k++)
                if (!isfinite(x[k]))
                    return k;
    }
    return n;
}

static int non_finite_error(const nn_model *m, const nn_st_tensor *t, bool nan, size_t at,
                            nn_err *err)
{
    return nn_fail(err,
                   "%s: tensor '%s' holds %s at element %zu; refusing to load it "
                   "(NNTERP_CHECK_WEIGHTS=0 skips this check)",
                   nn_st_file_of(&m->archive, t), t->name, nan ? "NaN" : "infinity", at);
}

/* The float32 data of a tensor (norms, biases, positions; every tensor of a llama2.c file): the
 * mapped bytes themselves when they are aligned F32 (so a process touches only the pages it
 * computes with), else a converted copy owned by the model. */
static const float *tensor_f32(nn_model *m, const nn_st_tensor *t, nn_err *err)
{
    const float *w;
    bool mapped = t->dtype == NN_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
    if (m->headers_only && check_weights() < CHECK_ALL) {
        if (t->dtype != NN_DT_F32 && t->dtype != NN_DT_F16 && t->dtype != NN_DT_BF16) {
            nn_fail(err, "%s: tensor '%s': dtype %s cannot be used as weights (F32, F16 or BF16)",
                    nn_st_file_of(&m->archive, t), t->name, nn_dtype_name(t->dtype));
            return NULL;
        }
        return (const float *)t->data; /* never read: the model cannot run */
    }
    if (mapped) {
        w = (const float *)t->data;
    } else {
        float *buf = nn_malloc(t->numel * sizeof(float), err);
        if (!buf)
            return NULL;
        if (nn_st_to_f32(t, buf, err) != NN_OK) {
            nn_free(buf);
            nn_err_prefix(err, "%s", nn_st_file_of(&m->archive, t));
            return NULL;
        }
        if (keep_owned(m, buf, err) != NN_OK)
            return NULL;
        w = buf;
    }
    size_t bad;
    if (check_weights() > (mapped ? CHECK_CONVERTED : CHECK_NONE) &&
        (bad = first_non_finite(w, t->numel)) < t->numel) {
        non_finite_error(m, t, isnan(w[bad]), bad, err);
        return NULL;
    }
    return w;
}

/* The index of the first NaN or infinity of n F16 or BF16 elements (exponent bits all ones). */
static size_t first_non_finite_half(const uint16_t *x, size_t n, nn_dtype dt, bool *nan)
{
    uint16_t exp = dt == NN_DT_BF16 ? 0x7f80 : 0x7c00, mant = dt == NN_DT_BF16 ? 0x007f : 0x03ff;
    const size_t block = 16384;
    for (size_t i = 0; i < n; i += block) {
        size_t end = n - i < block ? n : i + block;
        uint32_t bad = 0;
        for (size_t k = i; k < end; k++)
            bad |= (x[k] & exp) == exp;
        if (bad)
            for (size_t k = i; k < end; k++)
                if ((x[k] & exp) == exp) {
                    *nan = (x[k] & mant) != 0;
                    return k;
                }
    }
    return n;
}

/* A matrix or embedding in its stored dtype: the mapped bytes when aligned, else a copy owned by
 * the model (same dtype). F16/BF16 data is scanned for NaN and infinity unless
 * NNTERP_CHECK_WEIGHTS=0 (the process reads these bytes to compute anyway: only the layers it
 * runs are loaded); mapped F32 only with NNTERP_CHECK_WEIGHTS=1, as before. */
static const void *tensor_stored(nn_model *m, const nn_st_tensor *t, nn_dtype *dtype, nn_err *err)
{
    if (t->dtype != NN_DT_F16 && t->dtype != NN_DT_BF16) {
        *dtype = NN_DT_F32;
        return tensor_f32(m, t, err);
    }
    *dtype = t->dtype;
    if (m->headers_only && check_weights() < CHECK_ALL)
        return t->data; /* never read */
    const uint16_t *w = (const uint16_t *)t->data;
    if ((uintptr_t)t->data % sizeof(uint16_t)) {
        uint16_t *copy = owned_elems(m, t->numel, sizeof(uint16_t), err);
        if (!copy)
            return NULL;
        memcpy(copy, t->data, t->numel * sizeof(uint16_t));
        w = copy;
    }
    size_t bad;
    bool nan = false;
    if (check_weights() > CHECK_NONE &&
        (bad = first_non_finite_half(w, t->numel, t->dtype, &nan)) < t->numel) {
        non_finite_error(m, t, nan, bad, err);
        return NULL;
    }
    return w;
}

/* a * b * c added to *acc; false when it overflows. */
static bool add_product(size_t *acc, size_t a, size_t b, size_t c)
{
    size_t p;
    if (!nn_mul_size(a, b, &p) || !nn_mul_size(p, c, &p) || p > SIZE_MAX - *acc)
        return false;
    *acc += p;
    return true;
}

/* Looks up "<prefix><name>.<suffix>" (also without the prefix; no ".<suffix>" when suffix is
 * empty), where name is name_fmt with the layer (and expert) filled in; name_fmt may list
 * alternatives "a|b", tried in order. The name found (or the first tried) is left in full. */
static const nn_st_tensor *lookup_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                         const char *suffix, bool required, char *full,
                                         size_t full_size, nn_err *err)
{
    char alt[512], name[512], first[512] = "";
    const nn_arch *a = m->cfg.arch;
    const nn_st_tensor *t = NULL;
    const char *dot = *suffix ? "." : "";
    for (const char *p = name_fmt; p && !t;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len >= sizeof alt)
            len = sizeof alt - 1;
        memcpy(alt, p, len);
        alt[len] = '\0';
        p = bar ? bar + 1 : NULL;
        snprintf(name, sizeof name, alt, layer, expert);
        if (!first[0])
            snprintf(first, sizeof first, "%s", name);
        snprintf(full, full_size, "%s%s%s%s", a->prefix, name, dot, suffix);
        t = nn_st_find(&m->archive, full);
        if (!t && *a->prefix) {
            snprintf(full, full_size, "%s%s%s", name, dot, suffix);
            t = nn_st_find(&m->archive, full);
        }
    }
    if (!t) {
        if (required)
            nn_fail(err, "%s: tensor '%s%s%s%s' is missing from the checkpoint", m->source,
                    a->prefix, first, dot, suffix);
        else
            err->msg[0] = '\0';
    }
    return t;
}

/* lookup_tensor, and the tensor's shape checked: [d0] (d1 = 0) or [d0, d1]. */
static const nn_st_tensor *find_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                       const char *suffix, int d0, int d1, bool required,
                                       nn_err *err)
{
    char full[600];
    const nn_st_tensor *t =
        lookup_tensor(m, name_fmt, layer, expert, suffix, required, full, sizeof full, err);
    if (!t)
        return NULL;
    int want_dims = d1 > 0 ? 2 : 1;
    bool ok = t->n_dims == want_dims && t->shape[0] == d0 && (want_dims == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[128] = "";
        size_t n = 0;
        for (int i = 0; i < t->n_dims && n < sizeof got - 24; i++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (want_dims == 2)
            nn_fail(err, "%s: tensor '%s' has shape [%s], expected [%d, %d]",
                    nn_st_file_of(&m->archive, t), full, got, d0, d1);
        else
            nn_fail(err, "%s: tensor '%s' has shape [%s], expected [%d]",
                    nn_st_file_of(&m->archive, t), full, got, d0);
        return NULL;
    }
    return t;
}

/* A tensor found as find_tensor says, as float32 (norms, biases, small vectors). */
static const float *load_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                const char *suffix, int d0, int d1, bool required, nn_err *err)
{
    const nn_st_tensor *t = find_tensor(m, name_fmt, layer, expert, suffix, d0, d1, required, err);
    return t ? tensor_f32(m, t, err) : NULL;
}

/* A matrix or embedding [d0, d1] in its stored dtype. */
static const void *load_stored(nn_model *m, const char *name_fmt, int layer, int expert, int d0,
                               int d1, nn_dtype *dtype, nn_err *err)
{
    const nn_st_tensor *t = find_tensor(m, name_fmt, layer, expert, "weight", d0, d1, true, err);
    return t ? tensor_stored(m, t, dtype, err) : NULL;
}

#define NEED(ptr)                                                                                  \
    do {                                                                                           \
        if (!(ptr))                                                                                \
            return NN_ERR;                                                                         \
    } while (0)

static int load_norm(nn_model *m, const char *fmt, int layer, nn_norm *out, nn_err *err)
{
    int d = m->cfg.d_model;
    out->w = out->b = NULL;
    if (m->cfg.arch->norm_no_weight)
        return NN_OK;
    NEED(out->w = load_tensor(m, fmt, layer, 0, "weight", d, 0, true, err));
    if (m->cfg.arch->norm_bias)
        NEED(out->b = load_tensor(m, fmt, layer, 0, "bias", d, 0, true, err));
    return NN_OK;
}

/* A linear layer stored as its own tensor ([out, in], or [in, out] when in_major). */
static int load_linear_as(nn_model *m, const char *fmt, int layer, int expert, int n_in, int n_out,
                          bool bias, bool in_major, nn_linear *out, nn_err *err)
{
    out->n_in = n_in;
    out->n_out = n_out;
    out->in_major = in_major;
    out->ld = (size_t)(in_major ? n_out : n_in);
    out->mm = NULL;
    NEED(out->w = load_stored(m, fmt, layer, expert, in_major ? n_in : n_out,
                              in_major ? n_out : n_in, &out->dtype, err));
    out->b = NULL;
    if (bias)
        NEED(out->b = load_tensor(m, fmt, layer, expert, "bias", n_out, 0, true, err));
    return NN_OK;
}

static int load_linear(nn_model *m, const char *fmt, int layer, int n_in, int n_out, bool bias,
                       nn_linear *out, nn_err *err)
{
    return load_linear_as(m, fmt, layer, 0, n_in, n_out, bias, m->cfg.arch->linear_in_major, out,
                          err);
}

/* A small matrix kept as a float32 copy whatever its stored dtype (routers: [n_experts, d], whose
 * top-k choice is discrete; a few hundred KB). */
static int load_linear_f32(nn_model *m, const char *fmt, int layer, int n_in, int n_out,
                           bool bias, nn_linear *out, nn_err *err)
{
    if (load_linear(m, fmt, layer, n_in, n_out, bias, out, err))
        return NN_ERR;
    if (out->dtype == NN_DT_F32 || m->headers_only)
        return NN_OK;
    size_t n = (size_t)n_in * (size_t)n_out;
    float *w = owned_floats(m, n, err);
    if (!w)
        return NN_ERR;
    for (size_t i = 0; i < n; i++)
        w[i] = nn_linear_at(out, i);
    out->w = w;
    out->dtype = NN_DT_F32;
    return NN_OK;
}

/* Consecutive row (or, in_major, column) blocks of one fused projection as views. */
static void split_rows(const nn_linear *fused, nn_linear **parts, const int *widths, int n)
{
    int start = 0;
    for (int i = 0; i < n; i++) {
        *parts[i] = *fused;
        parts[i]->n_out = widths[i];
        /* in_major [in][out]: a column block; out-major [out][in]: a row block */
        size_t at = fused->in_major ? (size_t)start : (size_t)start * fused->ld;
        if (fused->dtype == NN_DT_F32)
            parts[i]->w = fused->w + at;
        else
            parts[i]->w16 = fused->w16 + at;
        parts[i]->b = fused->b ? fused->b + start : NULL;
        start += widths[i];
    }
}

/* q, k, v of one fused projection. [q|k|v] blocks are views; the interleaved layouts (per head,
 * per kv group) are copied once into [q|k|v] order so the forward pass sees one layout. */
static int load_fused_qkv(nn_model *m, int layer, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int H = c->n_heads, G = c->n_kv_heads, E = c->head_dim, d = c->d_model;
    int qd = H * E, kvd = G * E, total = qd + 2 * kvd;
    nn_linear fused;
    if (load_linear(m, c->arch->qkv, layer, d, total, c->qkv_bias, &fused, err))
        return NN_ERR;
    if (c->qkv_layout != NN_QKV_BLOCKS) {
        size_t es = nn_linear_elem_size(&fused);
        uint8_t *w = owned_elems(m, (size_t)total * (size_t)d, es, err);
        float *b = fused.b ? owned_floats(m, (size_t)total, err) : NULL;
        if (!w || (fused.b && !b))
            return NN_ERR;
        int per = c->qkv_layout == NN_QKV_PER_HEAD ? 3 : H / G + 2; /* heads in a source group */
        int groups = c->qkv_layout == NN_QKV_PER_HEAD ? H : G;
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < per; j++) {
                int dst; /* destination head block */
                if (c->qkv_layout == NN_QKV_PER_HEAD)
                    dst = j == 0 ? g * E : j == 1 ? qd + g * E : qd + kvd + g * E;
                else
                    dst = j < per - 2    ? (g * (per - 2) + j) * E
                          : j == per - 2 ? qd + g * E
                                         : qd + kvd + g * E;
                size_t src = ((size_t)g * per + (size_t)j) * (size_t)E;
                memcpy(w + (size_t)dst * d * es, (const uint8_t *)fused.w + src * fused.ld * es,
                       (size_t)E * (size_t)d * es);
                if (b)
                    memcpy(b + dst, fused.b + src, (size_t)E * sizeof(float));
            }
        fused.w = (const float *)(const void *)w; /* of fused.dtype */
        fused.b = b;
        fused.ld = (size_t)d;
    }
    nn_linear *parts[3] = {&L->q, &L->k, &L->v};
    int widths[3] = {qd, kvd, kvd};
    split_rows(&fused, parts, widths, 3);
    return NN_OK;
}

/* A dense MLP: up and down, and gate when the family gates (or a fused [gate|up]). */
static int load_dense_mlp(nn_model *m, int i, const char *gate, const char *up, const char *gate_up,
                          const char *down, int F, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int d = c->d_model;
    if (gate_up) {
        nn_linear fused;
        if (load_linear(m, gate_up, i, d, 2 * F, c->mlp_bias, &fused, err))
            return NN_ERR;
        nn_linear *parts[2] = {&L->gate, &L->up};
        int widths[2] = {F, F};
        split_rows(&fused, parts, widths, 2);
    } else if (load_linear(m, up, i, d, F, c->mlp_bias, &L->up, err) ||
               (c->arch->gated_mlp && load_linear(m, gate, i, d, F, c->mlp_bias, &L->gate, err))) {
        return NN_ERR;
    }
    return load_linear(m, down, i, F, d, c->mlp_bias, &L->down, err);
}

/* A stacked tensor [X, d1] or [X, d1, d2] (d2 > 0) under its full name (no suffix), as float32. */
static const float *load_stack(nn_model *m, const char *fmt, int layer, int X, int d1, int d2,
                               nn_err *err)
{
    char full[600];
    const nn_st_tensor *t = lookup_tensor(m, fmt, layer, 0, "", true, full, sizeof full, err);
    if (!t)
        return NULL;
    int dims = d2 > 0 ? 3 : 2;
    if (t->n_dims != dims || t->shape[0] != X || t->shape[1] != d1 ||
        (dims == 3 && t->shape[2] != d2)) {
        if (dims == 3)
            nn_fail(err, "%s: tensor '%s' must have shape [%d, %d, %d]",
                    nn_st_file_of(&m->archive, t), full, X, d1, d2);
        else
            nn_fail(err, "%s: tensor '%s' must have shape [%d, %d]", nn_st_file_of(&m->archive, t),
                    full, X, d1);
        return NULL;
    }
    return tensor_f32(m, t, err);
}

/* gpt-oss's MXFP4 expert stacks (quantization_config quant_method "mxfp4", as OpenAI released
 * the checkpoints): "<name>_blocks" [X, n_out, n_in/32, 16] U8 holds two e2m1 values a byte (low
 * nibble first) and "<name>_scales" [X, n_out, n_in/32] U8 one power of two (exponent + 127) per
 * 32 inputs. Dequantized exactly into float32 and transposed to the in-major stack [X, n_in,
 * n_out], as transformers' convert_moe_packed_tensors does. NULL with no error when the checkpoint
 * has no "<name>_blocks" (a dequantized copy). */
static const float *load_mxfp4_stack(nn_model *m, const char *fmt, int layer, int X, int n_in,
                                     int n_out, nn_err *err)
{
    static const float e2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                   -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    char bname[300], sname[300], bfull[600], sfull[600];
    snprintf(bname, sizeof bname, "%s_blocks", fmt);
    snprintf(sname, sizeof sname, "%s_scales", fmt);
    const nn_st_tensor *b = lookup_tensor(m, bname, layer, 0, "", false, bfull, sizeof bfull, err);
    if (!b)
        return NULL;
    const nn_st_tensor *sc = lookup_tensor(m, sname, layer, 0, "", true, sfull, sizeof sfull, err);
    if (!sc)
        return NULL;
    int G = n_in / 32;
    if (n_in % 32 || b->dtype != NN_DT_U8 || b->n_dims != 4 || b->shape[0] != X ||
        b->shape[1] != n_out || b->shape[2] != G || b->shape[3] != 16) {
        nn_fail(err, "%s: MXFP4 tensor '%s' must be U8 of shape [%d, %d, %d, 16]",
                nn_st_file_of(&m->archive, b), bfull, X, n_out, G);
        return NULL;
    }
    if (sc->dtype != NN_DT_U8 || sc->n_dims != 3 || sc->shape[0] != X || sc->shape[1] != n_out ||
        sc->shape[2] != G) {
        nn_fail(err, "%s: MXFP4 tensor '%s' must be U8 of shape [%d, %d, %d]",
                nn_st_file_of(&m->archive, sc), sfull, X, n_out, G);
        return NULL;
    }
    size_t per = (size_t)n_in * (size_t)n_out;
    float *w = owned_floats(m, (size_t)X * per, err);
    if (!w)
        return NULL;
    const uint8_t *blocks = (const uint8_t *)b->data, *scales = (const uint8_t *)sc->data;
    for (size_t e = 0; e < (size_t)X; e++)
        for (size_t r = 0; r < (size_t)n_out; r++)
            for (size_t g = 0; g < (size_t)G; g++) {
                size_t row = (e * (size_t)n_out + r) * (size_t)G + g;
                int exponent = (int)scales[row] - 127;
                for (size_t j = 0; j < 16; j++) {
                    uint8_t byte = blocks[row * 16 + j];
                    size_t in = g * 32 + 2 * j;
                    w[e * per + in * (size_t)n_out + r] = ldexpf(e2m1[byte & 15], exponent);
                    w[e * per + (in + 1) * (size_t)n_out + r] = ldexpf(e2m1[byte >> 4], exponent);
                }
            }
    size_t bad = first_non_finite(w, (size_t)X * per);
    if (bad < (size_t)X * per) {
        nn_fail(err, "%s: MXFP4 tensor '%s' dequantizes to infinity at element %zu (scale 255)",
                nn_st_file_of(&m->archive, sc), sfull, bad);
        return NULL;
    }
    return w;
}

/* Experts stored stacked, one tensor per layer for all of them (gpt-oss): gate_up [X, d, 2F] and
 * down [X, F, d], in-major, with biases "<name>_bias" [X, 2F] and [X, d]. Each expert's
 * matrices are views into the stacks. */
static int load_expert_stacks(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int X = c->n_experts, d = c->d_model, F = c->moe_d_ff;
    char gub_name[256], dnb_name[256];
    snprintf(gub_name, sizeof gub_name, "%s_bias", a->expert_gate_up_stack);
    snprintf(dnb_name, sizeof dnb_name, "%s_bias", a->expert_down_stack);
    const float *gu = NULL, *gub, *dn = NULL, *dnb;
    err->msg[0] = '\0';
    if (c->experts_mxfp4) {
        if (!(gu = load_mxfp4_stack(m, a->expert_gate_up_stack, i, X, d, 2 * F, err)) &&
            err->msg[0])
            return NN_ERR;
        if (!(dn = load_mxfp4_stack(m, a->expert_down_stack, i, X, F, d, err)) && err->msg[0])
            return NN_ERR;
    }
    if (!gu)
        NEED(gu = load_stack(m, a->expert_gate_up_stack, i, X, d, 2 * F, err));
    if (!dn)
        NEED(dn = load_stack(m, a->expert_down_stack, i, X, F, d, err));
    NEED(gub = load_stack(m, gub_name, i, X, 2 * F, 0, err));
    NEED(dnb = load_stack(m, dnb_name, i, X, d, 0, err));
    for (int e = 0; e < X; e++) {
        nn_expert *x = &L->experts[e];
        size_t E = (size_t)e;
        x->gate_up = (nn_linear){.w = gu + E * (size_t)d * 2 * (size_t)F,
                                 .b = gub + E * 2 * (size_t)F,
                                 .n_in = d,
                                 .n_out = 2 * F,
                                 .ld = 2 * (size_t)F,
                                 .in_major = true};
        x->down = (nn_linear){.w = dn + E * (size_t)F * (size_t)d,
                              .b = dnb + E * (size_t)d,
                              .n_in = F,
                              .n_out = d,
                              .ld = (size_t)d,
                              .in_major = true};
    }
    return NN_OK;
}

/* Multi-head latent attention's projections and latent norms (DeepSeek; attention_mla.h). */
static int load_mla(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, H = c->n_heads, E = c->head_dim, dn = E - c->qk_rope_dim,
        dv = c->v_head_dim, R = c->kv_lora_rank, Rq = c->q_lora_rank;
    /* DeepseekV3Attention: attention_bias puts biases on q_a, kv_a and o only */
    if (Rq > 0) {
        if (load_linear(m, a->q_a, i, d, Rq, c->qkv_bias, &L->q_a, err) ||
            load_linear(m, a->q_b, i, Rq, H * E, false, &L->q_b, err))
            return NN_ERR;
        NEED(L->q_a_norm.w = load_tensor(m, a->q_a_norm, i, 0, "weight", Rq, 0, true, err));
    } else if (load_linear(m, a->q, i, d, H * E, false, &L->q, err)) {
        return NN_ERR;
    }
    if (load_linear(m, a->kv_a, i, d, R + c->qk_rope_dim, c->qkv_bias, &L->kv_a, err) ||
        load_linear(m, a->kv_b, i, R, H * (dn + dv), false, &L->kv_b, err))
        return NN_ERR;
    NEED(L->kv_a_norm.w = load_tensor(m, a->kv_a_norm, i, 0, "weight", R, 0, true, err));
    return NN_OK;
}

static int load_moe(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, E = c->n_experts, F = c->moe_d_ff;
    bool in_major = a->linear_in_major;
    L->moe = true;
    if (load_linear_f32(m, a->router, i, d, E, a->router_bias, &L->router, err))
        return NN_ERR;
    if (a->router_score_bias)
        NEED(L->router_score_bias =
                 load_tensor(m, a->router_score_bias, i, 0, "", E, 0, true, err));
    NEED(L->experts = nn_calloc((size_t)E, sizeof *L->experts, err));
    if (a->expert_gate_up_stack && load_expert_stacks(m, i, L, err))
        return NN_ERR;
    for (int e = 0; e < E && !a->expert_gate_up_stack; e++) {
        nn_expert *x = &L->experts[e];
        if (load_linear_as(m, a->expert_gate, i, e, d, F, false, in_major, &x->gate, err) ||
            load_linear_as(m, a->expert_up, i, e, d, F, false, in_major, &x->up, err) ||
            load_linear_as(m, a->expert_down, i, e, F, d, false, in_major, &x->down, err))
            return NN_ERR;
    }
    if (c->shared_d_ff > 0 &&
        (load_dense_mlp(m, i, a->shared_gate, a->shared_up, NULL, a->shared_down, c->shared_d_ff, L,
                        err) ||
         (a->shared_expert_gate &&
          load_linear_f32(m, a->shared_expert_gate, i, d, 1, false, &L->shared_expert_gate, err))))
        return NN_ERR;
    return NN_OK;
}

/* ---- q/k norms (Qwen3, Gemma 3, OLMo 2): weights of head_dim, or of the whole projection ---- */
static int load_qk_norms(nn_model *m, int layer, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int E = c->head_dim;
    int wq = a->qk_norm_whole ? c->n_heads * E : E, wk = a->qk_norm_whole ? c->n_kv_heads * E : E;
    L->q_norm.b = L->k_norm.b = NULL;
    NEED(L->q_norm.w = load_tensor(m, a->q_norm, layer, 0, "weight", wq, 0, true, err));
    NEED(L->k_norm.w = load_tensor(m, a->k_norm, layer, 0, "weight", wk, 0, true, err));
    return NN_OK;
}

static int load_weights(nn_model *m, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    NEED(m->tok_emb = load_stored(m, a->tok_emb, 0, 0, c->vocab_size, d, &m->tok_emb_dtype, err));
    if (a->pos == NN_POS_LEARNED)
        NEED(m->pos_emb = load_tensor(m, a->pos_emb, 0, 0, "weight",
                                      c->max_positions + a->pos_offset, d, true, err));
    if (a->emb_norm && load_norm(m, a->emb_norm, 0, &m->emb_norm, err))
        return NN_ERR;
    if (load_norm(m, a->final_norm, 0, &m->final_norm, err))
        return NN_ERR;
    m->head = (nn_linear){.w = m->tok_emb,
                          .n_in = d,
                          .n_out = c->vocab_size,
                          .ld = (size_t)d,
                          .dtype = m->tok_emb_dtype};
    /* The head is a Linear [vocab, d] in every family, Conv1D ones included. */
    if (!c->tie_embeddings &&
        load_linear_as(m, a->head, 0, 0, d, c->vocab_size, false, false, &m->head, err))
        return NN_ERR;
    if (c->head_bias)
        NEED(m->head.b = load_tensor(m, a->head, 0, 0, "bias", c->vocab_size, 0, true, err));
    m->layers = nn_calloc((size_t)c->n_layers, sizeof *m->layers, err);
    NEED(m->layers);
    for (int i = m->layer_begin; i < m->layer_end; i++) {
        nn_layer *L = &m->layers[i];
        if (!a->no_pre_norm && load_norm(m, a->attn_norm, i, &L->attn_norm, err))
            return NN_ERR;
        if (c->parallel && c->shared_norm)
            L->mlp_norm = L->attn_norm;
        else if (!a->no_pre_norm && load_norm(m, a->mlp_norm, i, &L->mlp_norm, err))
            return NN_ERR;
        if (a->q_norm && load_qk_norms(m, i, L, err))
            return NN_ERR;
        if (a->post_attn_norm && (load_norm(m, a->post_attn_norm, i, &L->post_attn_norm, err) ||
                                  load_norm(m, a->post_mlp_norm, i, &L->post_mlp_norm, err)))
            return NN_ERR;
        if (a->mla) {
            if (load_mla(m, i, L, err))
                return NN_ERR;
        } else if (a->fused_qkv) {
            if (load_fused_qkv(m, i, L, err))
                return NN_ERR;
        } else if (load_linear(m, a->q, i, d, qd, c->qkv_bias, &L->q, err) ||
                   load_linear(m, a->k, i, d, kvd, c->qkv_bias, &L->k, err) ||
                   load_linear(m, a->v, i, d, kvd, c->qkv_bias, &L->v, err)) {
            return NN_ERR;
        }
        if (load_linear(m, a->o, i, a->mla ? c->n_heads * c->v_head_dim : qd, d, c->o_bias, &L->o,
                        err))
            return NN_ERR;
        if (a->attn_sinks)
            NEED(L->sinks = load_tensor(m, a->attn_sinks, i, 0, "", c->n_heads, 0, true, err));
        if (nn_layer_moe(c, i)) {
            if (load_moe(m, i, L, err))
                return NN_ERR;
        } else if (!a->up && !a->gate_up) {
            return nn_fail(err, "%s: layer %d: %s layers without experts are not supported",
                           m->source, i, a->family);
        } else if (load_dense_mlp(m, i, a->gate, a->up, a->gate_up, a->down, c->d_ff, L, err)) {
            return NN_ERR;
        }
    }
    return NN_OK;
}

/* generation_config.json, when present, has the last word on bos/eos. */
static int read_generation_config(const char *dir, nn_config *c, nn_err *err)
{
    char *path = nn_path_join(dir, "generation_config.json", err);
    if (!path)
        return NN_ERR;
    int rc = NN_OK;
    if (nn_path_is_file(path)) {
        cJSON *root = nn_json_parse_file(path, 1 << 20, err);
        if (!root)
            rc = NN_ERR;
        else if (parse_token_id(root, "bos_token_id", path, &c->bos_token_id, err) ||
                 parse_token_id(root, "eos_token_id", path, &c->eos_token_id, err))
            rc = NN_ERR;
        cJSON_Delete(root);
    }
    nn_free(path);
    return rc;
}

/* The layers a process holds: [begin, end) clamped to the model, or all when end < 0. */
static int set_layer_range(nn_model *m, int begin, int end, nn_err *err)
{
    int L = m->cfg.n_layers;
    if (end < 0) {
        begin = 0;
        end = L;
    }
    if (begin < 0 || end > L || begin >= end)
        return nn_fail(err, "%s: layer range [%d, %d) is outside the model's %d layers", m->source,
                       begin, end, L);
    m->layer_begin = begin;
    m->layer_end = end;
    m->last_stage = end == L;
    return NN_OK;
}

static int load_hf_dir(const char *dir, int begin, int end, bool headers_only, nn_model **out,
                       nn_err *err)
{
    *out = NULL;
    nn_model *m = nn_calloc(1, sizeof *m, err);
    if (!m)
        return NN_ERR;
    m->headers_only = headers_only;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
    char *config_path = NULL;
    int rc = NN_ERR;
    if (!(m->source = nn_strdup(dir, err)) ||
        !(config_path = nn_path_join(dir, "config.json", err)))
        goto done;
    if (nn_file_read(config_path, 4u << 20, &m->config_json, NULL, err) ||
        nn_config_from_hf(m->config_json, config_path, &m->cfg, err) ||
        read_generation_config(dir, &m->cfg, err) || set_layer_range(m, begin, end, err) ||
        nn_st_open_dir(dir, &m->archive, err) || load_weights(m, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(config_path);
    if (rc != NN_OK) {
        nn_model_free(m);
        return NN_ERR;
    }
    *out = m;
    return NN_OK;
}

/* ---- llama2.c checkpoints ---------------------------------------------------------------------
 */

/* A Llama row whose rotary embedding rotates adjacent pairs, as llama2.c's run.c does (its q/k rows
 * are not permuted into Hugging Face's half-split layout). */
static const nn_arch llama2c_arch = {
    .model_type = "llama2c",
    .family = "Llama (llama2.c checkpoint)",
    .norm = NN_NORM_RMSNORM,
    .pos = NN_POS_ROPE,
    .gated_mlp = true,
    .rope_interleaved = true,
    .notes = "standard pre-norm block; RoPE rotates adjacent pairs (llama2.c layout)",
    .prefix = "",
};

int nn_model_load_llama2c(const char *path, nn_model **out, nn_err *err)
{
    *out = NULL;
    nn_model *m = nn_calloc(1, sizeof *m, err);
    if (!m)
        return NN_ERR;
    int rc = NN_ERR;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
    if (!(m->source = nn_strdup(path, err)) || nn_file_map(path, &m->bin, err))
        goto done;
    if (m->bin.size < 28) {
        nn_fail(err, "%s: %zu bytes is too short for a llama2.c header (28 bytes)", path,
                m->bin.size);
        goto done;
    }
    int32_t h[7];
    memcpy(h, m->bin.data, sizeof h);
    static const char *fields[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                    "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        long v = i == 5 ? labs((long)h[i]) : (long)h[i];
        if (v <= 0 || v > (1L << 24)) {
            nn_fail(err, "%s: header field '%s' = %d is out of range", path, fields[i], h[i]);
            goto done;
        }
    }
    nn_config *c = &m->cfg;
    c->arch = &llama2c_arch;
    c->d_model = h[0];
    c->d_ff = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = abs(h[5]);
    c->tie_embeddings = h[5] > 0;
    c->max_positions = h[6];
    if (c->d_model % c->n_heads || c->n_heads % c->n_kv_heads || (c->d_model / c->n_heads) % 2) {
        nn_fail(err, "%s: header: dim %d, n_heads %d, n_kv_heads %d do not divide evenly", path,
                c->d_model, c->n_heads, c->n_kv_heads);
        goto done;
    }
    c->head_dim = c->rotary_dim = c->d_model / c->n_heads;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0;
    c->act = NN_ACT_SILU;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    size_t d = (size_t)c->d_model, L = (size_t)c->n_layers, ff = (size_t)c->d_ff,
           V = (size_t)c->vocab_size, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim,
           hd = (size_t)c->head_dim, T = (size_t)c->max_positions;
    /* Floats the header declares (each size is below 2^24, but products of three are not below
     * 2^64: checked). freq_cis real and imag: T * hd/2 each. */
    size_t need = 0;
    bool fits = add_product(&need, V, d, c->tie_embeddings ? 1 : 2) &&
                add_product(&need, 2 * L, d, 1) && add_product(&need, 2 * L, d, d) &&
                add_product(&need, 2 * L, kvd, d) && add_product(&need, 3 * L, ff, d) &&
                add_product(&need, d, 1, 1) && add_product(&need, T, hd, 1) &&
                need <= SIZE_MAX / sizeof(float);
    size_t have = (m->bin.size - 28) / sizeof(float);
    if (!fits || have != need || (m->bin.size - 28) % sizeof(float)) {
        char needs[32] = "more than 2^64";
        if (fits)
            snprintf(needs, sizeof needs, "%zu", need * sizeof(float));
        nn_fail(err,
                "%s: %zu bytes of weights, but the header (dim %zu, %zu layers, vocab %zu) "
                "needs %s",
                path, m->bin.size - 28, d, L, V, needs);
        goto done;
    }
    const float *p = (const float *)(m->bin.data + 28);
    m->tok_emb = p;
    p += V * d;
    const float *rms_att = p;
    p += L * d;
    const float *wq = p;
    p += L * d * d;
    const float *wk = p;
    p += L * kvd * d;
    const float *wv = p;
    p += L * kvd * d;
    const float *wo = p;
    p += L * d * d;
    const float *rms_ffn = p;
    p += L * d;
    const float *w1 = p;
    p += L * ff * d;
    const float *w2 = p;
    p += L * d * ff;
    const float *w3 = p;
    p += L * ff * d;
    m->final_norm.w = p;
    p += d;
    p += T * hd; /* freq_cis_real, freq_cis_imag: recomputed instead */
    m->head = (nn_linear){
        .w = c->tie_embeddings ? m->tok_emb : p, .n_in = (int)d, .n_out = (int)V, .ld = d};
    if (check_weights() == CHECK_ALL) { /* the tables are mapped F32: scanned on request only */
        /* run.c's names for the tables; per-layer ones name the layer too */
        const struct {
            const char *name;
            const float *w;
            size_t per_layer, n;
        } tables[] = {{"token_embedding_table", m->tok_emb, 0, V * d},
                      {"rms_att_weight", rms_att, d, L * d},
                      {"wq", wq, d * d, L * d * d},
                      {"wk", wk, kvd * d, L * kvd * d},
                      {"wv", wv, kvd * d, L * kvd * d},
                      {"wo", wo, d * d, L * d * d},
                      {"rms_ffn_weight", rms_ffn, d, L * d},
                      {"w1", w1, ff * d, L * ff * d},
                      {"w2", w2, d * ff, L * d * ff},
                      {"w3", w3, ff * d, L * ff * d},
                      {"rms_final_weight", m->final_norm.w, 0, d},
                      {"wcls", c->tie_embeddings ? NULL : p, 0, V * d}};
        for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
            size_t bad = tables[i].w ? first_non_finite(tables[i].w, tables[i].n) : tables[i].n;
            if (bad == tables[i].n)
                continue;
            char layer[48] = "";
            if (tables[i].per_layer)
                snprintf(layer, sizeof layer, " (layer %zu)", bad / tables[i].per_layer);
            nn_fail(err,
                    "%s: weights '%s'%s hold %s at element %zu; refusing to load them "
                    "(NNTERP_CHECK_WEIGHTS=0 skips this check)",
                    path, tables[i].name, layer, isnan(tables[i].w[bad]) ? "NaN" : "infinity",
                    tables[i].per_layer ? bad % tables[i].per_layer : bad);
            goto done;
        }
    }
    m->layer_begin = 0;
    m->layer_end = (int)L;
    m->last_stage = true;
    if (!(m->layers = nn_calloc(L, sizeof *m->layers, err)))
        goto done;
    for (size_t i = 0; i < L; i++) {
        nn_layer *ly = &m->layers[i];
        ly->attn_norm.w = rms_att + i * d;
        ly->mlp_norm.w = rms_ffn + i * d;
        ly->q = (nn_linear){.w = wq + i * d * d, .n_in = (int)d, .n_out = (int)d, .ld = d};
        ly->k = (nn_linear){.w = wk + i * kvd * d, .n_in = (int)d, .n_out = (int)kvd, .ld = d};
        ly->v = (nn_linear){.w = wv + i * kvd * d, .n_in = (int)d, .n_out = (int)kvd, .ld = d};
        ly->o = (nn_linear){.w = wo + i * d * d, .n_in = (int)d, .n_out = (int)d, .ld = d};
        ly->gate = (nn_linear){.w = w1 + i * ff * d, .n_in = (int)d, .n_out = (int)ff, .ld = d};
        ly->down = (nn_linear){.w = w2 + i * d * ff, .n_in = (int)ff, .n_out = (int)d, .ld = ff};
        ly->up = (nn_linear){.w = w3 + i * ff * d, .n_in = (int)d, .n_out = (int)ff, .ld = d};
    }
    char json[512];
    snprintf(json, sizeof json,
             "{\"model_type\": \"llama2c\", \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, "
             "\"n_heads\": %d, \"n_kv_heads\": %d, \"vocab_size\": %d, \"seq_len\": %d}",
             h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    if (!(m->config_json = nn_strdup(json, err)))
        goto done;
    rc = NN_OK;
done:
    if (rc != NN_OK) {
        nn_model_free(m);
        return NN_ERR;
    }
    *out = m;
    return NN_OK;
}

int nn_model_load_hf_dir(const char *dir, nn_model **out, nn_err *err)
{
    return load_hf_dir(dir, 0, -1, false, out, err);
}

int nn_model_load(const char *model, nn_model **out, nn_err *err)
{
    return nn_model_load_layers(model, 0, -1, out, err);
}

static int load_model(const char *model, int layer_begin, int layer_end, bool headers_only,
                      nn_model **out, nn_err *err)
{
    *out = NULL;
    char *path = nn_model_resolve(model, err);
    if (!path)
        return NN_ERR;
    int rc;
    if (nn_path_is_dir(path))
        rc = load_hf_dir(path, layer_begin, layer_end, headers_only, out, err);
    else if ((rc = nn_model_load_llama2c(path, out, err)) == NN_OK &&
             (rc = set_layer_range(*out, layer_begin, layer_end, err)) != NN_OK) {
        /* llama2.c weights are views into the mapping: nothing to skip, only the range to set */
        nn_model_free(*out);
        *out = NULL;
    }
    nn_free(path);
    return rc;
}

int nn_model_load_layers(const char *model, int layer_begin, int layer_end, nn_model **out,
                         nn_err *err)
{
    return load_model(model, layer_begin, layer_end, false, out, err);
}

int nn_model_inspect(const char *model, nn_model **out, nn_err *err)
{
    return load_model(model, 0, -1, true, out, err);
}

int nn_model_config(const char *model, nn_config *cfg, nn_err *err)
{
    char *path = nn_model_resolve(model, err);
    if (!path)
        return NN_ERR;
    int rc;
    if (nn_path_is_dir(path)) {
        char *config_path = nn_path_join(path, "config.json", err), *text = NULL;
        rc = !config_path || nn_file_read(config_path, 4u << 20, &text, NULL, err) ||
                     nn_config_from_hf(text, config_path, cfg, err)
                 ? NN_ERR
                 : NN_OK;
        nn_free(text);
        nn_free(config_path);
    } else {
        nn_model *m = NULL; /* a llama2.c checkpoint maps without copying: loading it is cheap */
        rc = nn_model_load_llama2c(path, &m, err);
        if (rc == NN_OK)
            *cfg = m->cfg;
        nn_model_free(m);
    }
    nn_free(path);
    return rc;
}

/* ---- Stored sizes and compute precision --------------------------------------------------------
 */

size_t nn_linear_elem_size(const nn_linear *W)
{
    return W->dtype == NN_DT_F32 ? sizeof(float) : sizeof(uint16_t);
}

float nn_linear_at(const nn_linear *W, size_t i)
{
    switch (W->dtype) {
    case NN_DT_BF16:
        return nn_bf16_to_f32(W->w16[i]);
    case NN_DT_F16:
        return nn_f16_to_f32(W->w16[i]);
    default:
        return W->w[i];
    }
}

static size_t linear_bytes(const nn_linear *W)
{
    if (!W->w)
        return 0;
    return (size_t)W->n_in * (size_t)W->n_out * nn_linear_elem_size(W) +
           (W->b ? (size_t)W->n_out * sizeof(float) : 0) + nn_bf16_gemm_owned_bytes(W->mm);
}

/* The linears of layer L, experts included: calls fn on each present one. */
static int each_linear(nn_model *m, nn_layer *L, int (*fn)(nn_model *, nn_linear *, void *),
                       void *ctx)
{
    nn_linear *ws[] = {&L->q,    &L->k,      &L->v,
                       &L->o,    &L->gate,   &L->up,
                       &L->down, &L->router, &L->shared_expert_gate};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->w && fn(m, ws[i], ctx) != NN_OK)
            return NN_ERR;
    for (int e = 0; L->moe && L->experts && e < m->cfg.n_experts; e++) {
        nn_expert *x = &L->experts[e];
        nn_linear *es[] = {&x->gate, &x->up, &x->down};
        for (int i = 0; i < 3; i++)
            if (es[i]->w && fn(m, es[i], ctx) != NN_OK)
                return NN_ERR;
    }
    return NN_OK;
}

static int add_bytes(nn_model *m, nn_linear *W, void *ctx)
{
    (void)m;
    *(size_t *)ctx += linear_bytes(W);
    return NN_OK;
}

size_t nn_model_layer_bytes(const nn_model *model, int l)
{
    nn_model *m = (nn_model *)model; /* each_linear only reads here */
    size_t bytes = 0;
    if (l < m->layer_begin || l >= m->layer_end || !m->layers)
        return 0;
    each_linear(m, &m->layers[l], add_bytes, &bytes);
    return bytes + 6 * (size_t)m->cfg.d_model * sizeof(float); /* norms, at most */
}

size_t nn_model_outer_bytes(const nn_model *m, bool embed, bool head)
{
    const nn_config *c = &m->cfg;
    size_t d = (size_t)c->d_model, emb_elem = m->tok_emb_dtype == NN_DT_F32 ? 4 : 2;
    size_t bytes = 0;
    if (embed) {
        bytes += (size_t)c->vocab_size * d * emb_elem;
        if (m->pos_emb)
            bytes += (size_t)(c->max_positions + c->arch->pos_offset) * d * sizeof(float);
    }
    if (head) {
        bool tied = m->head.w == m->tok_emb;
        if (!(tied && embed))
            bytes += linear_bytes(&m->head);
        else
            bytes += nn_bf16_gemm_owned_bytes(m->head.mm);
        bytes += 2 * d * sizeof(float);
    }
    return bytes;
}

typedef struct compute_ctx {
    nn_compute mode;
    int layer;
    nn_err *err;
} compute_ctx;

static int keep_gemm(nn_model *m, nn_bf16_gemm *g, nn_err *err)
{
    nn_bf16_gemm **grown = nn_realloc(m->gemms, (m->n_gemms + 1) * sizeof *grown, err);
    if (!grown) {
        nn_bf16_gemm_free(g);
        return NN_ERR;
    }
    m->gemms = grown;
    m->gemms[m->n_gemms++] = g;
    return NN_OK;
}

static int x3_weights_ok(nn_model *m, nn_linear *W, void *ctx)
{
    compute_ctx *cc = ctx;
    bool router = cc->layer >= 0 && (W == &m->layers[cc->layer].router ||
                                     W == &m->layers[cc->layer].shared_expert_gate);
    if (W->dtype == NN_DT_BF16 || router)
        return NN_OK;
    nn_err *err = cc->err;
    if (cc->layer >= 0)
        return nn_fail(err,
                       "%s: compute bfloat16x3 needs BF16 weights (exact in bfloat16), and layer "
                       "%d holds a [%d, %d] matrix in %s: use compute bfloat16 or float32",
                       m->source, cc->layer, W->n_out, W->n_in, nn_dtype_name(W->dtype));
    return nn_fail(err,
                   "%s: compute bfloat16x3 needs BF16 weights (exact in bfloat16), and the head "
                   "is %s: use compute bfloat16 or float32",
                   m->source, nn_dtype_name(W->dtype));
}

static int make_gemm(nn_model *m, nn_linear *W, void *ctx)
{
    compute_ctx *cc = ctx;
    if (cc->layer >= 0 && (W == &m->layers[cc->layer].router ||
                           W == &m->layers[cc->layer].shared_expert_gate))
        return NN_OK; /* routers stay float32 (load_linear_f32) */
    nn_err *err = cc->err;
    nn_bf16_gemm *g = NULL;
    if (nn_bf16_gemm_create(W->w, W->b, W->dtype, W->n_in, W->n_out, W->ld, W->in_major, cc->mode,
                            &g, err) != NN_OK) {
        nn_err_prefix(err, "%s", m->source);
        return NN_ERR;
    }
    if (!g)
        return NN_OK; /* not on AMX at this shape: float32 */
    if (keep_gemm(m, g, err) != NN_OK)
        return NN_ERR;
    W->mm = g;
    return NN_OK;
}

static int clear_gemm(nn_model *m, nn_linear *W, void *ctx)
{
    (void)m;
    (void)ctx;
    W->mm = NULL;
    return NN_OK;
}

int nn_model_set_compute(nn_model *m, nn_compute mode, nn_err *err)
{
    if (m->headers_only)
        return nn_fail(err, "%s: loaded for inspection only", m->source);
    for (int l = m->layer_begin; m->layers && l < m->layer_end; l++)
        each_linear(m, &m->layers[l], clear_gemm, NULL);
    m->head.mm = NULL;
    for (size_t i = 0; i < m->n_gemms; i++)
        nn_bf16_gemm_free(m->gemms[i]);
    nn_free(m->gemms);
    m->gemms = NULL;
    m->n_gemms = 0;
    m->compute = mode;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
    if (mode == NN_COMPUTE_F32)
        return NN_OK;
    if (!nn_bf16_compiled())
        return nn_fail(err,
                       "compute %s needs oneDNN, and this nnterp was built without it (install "
                       "libdnnl-dev and reconfigure)",
                       nn_compute_name(mode));
    compute_ctx cc = {.mode = mode, .err = err};
    if (mode == NN_COMPUTE_BF16X3) {
        for (int l = m->layer_begin; m->layers && l < m->layer_end; l++) {
            cc.layer = l;
            if (each_linear(m, &m->layers[l], x3_weights_ok, &cc) != NN_OK)
                return NN_ERR;
        }
        cc.layer = -1;
        if (x3_weights_ok(m, &m->head, &cc) != NN_OK)
            return NN_ERR;
    }
    char impl[96];
    if (!nn_bf16_probe(impl, sizeof impl)) {
        snprintf(m->compute_kernel, sizeof m->compute_kernel,
                 "float32 (OpenBLAS sgemm: oneDNN's bfloat16 matmul here is %s, not AMX)", impl);
        return NN_OK;
    }
    for (int l = m->layer_begin; m->layers && l < m->layer_end; l++) {
        cc.layer = l;
        if (each_linear(m, &m->layers[l], make_gemm, &cc) != NN_OK)
            return NN_ERR;
    }
    cc.layer = -1;
    /* The head on every stage: any stage may unembed (the logit lens of its layers), and a
     * row's result must not depend on which stage computed it. A F32/F16 head gets a bfloat16
     * copy on each stage (half the bytes of a F32 head); a BF16 head is used in place. */
    if (make_gemm(m, &m->head, &cc) != NN_OK)
        return NN_ERR;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "oneDNN %s, %d rows per call", impl,
             (int)NN_BF16_ROWS);
    return NN_OK;
}
