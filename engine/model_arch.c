/* The architecture table: one row per Hugging Face model_type (which pieces of the one forward
 * pass apply, the tensor names, a configure hook for config keys of its own). See
 * docs/adding-a-family.md. */
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
        .configure_block = nn_configure_opt,
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
        .configure_block = nn_configure_gpt_bigcode,
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
        .configure_block = nn_configure_falcon,
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
