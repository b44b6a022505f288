#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints and their reference activations, from the newest transformers.

Run by hand with the shared virtual environment (transformers 5.x, torch 2.x CPU); tests never run it,
they read what it wrote (tests/reference/<family>/). See tools/reference/README.md.

  /work/venv/bin/python tools/reference/make_reference.py                 # every family of FAMILIES
  /work/venv/bin/python tools/reference/make_reference.py qwen3 gemma3    # some
  /work/venv/bin/python tools/reference/make_reference.py --checkpoint DIR --out REF_DIR
                                                # references of an existing checkpoint (drift runs)

Each family is one entry of FAMILIES: the config class's model_type and the config fields that differ
from BASE. The manifest format is ../shared/reference's (its README): raw little-endian float32 files,
shapes in manifest.json, right-padded batches, padded positions to be ignored.
"""
import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

# ---- The families -------------------------------------------------------------------------------

# Every tiny model: d 32, 4 query heads of 8 dims, 2 kv heads (GQA), 4 layers, vocab 300, context 64
# (small so that the committed data of every family stays near 1 MB).
BASE = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            num_hidden_layers=4, intermediate_size=64, vocab_size=300, max_position_embeddings=64,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)

LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                   high_freq_factor=4.0, original_max_position_embeddings=16)

# name: model_type (the config class), config (fields over BASE), description, and optional
# bf16 (write a BF16 checkpoint and its references; default True), sharded (also a sharded F32 copy),
# moe (report the routing margin; seeds are tried until it is at least MIN_MARGIN), extra_cases
# (more CASES rows), lens_post (what the model does to lm_head's output).
FAMILIES = {
    "qwen3": dict(
        model_type="qwen3",
        config=dict(rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
                    rms_norm_eps=1e-6),
        description="Qwen3: per-head q/k RMSNorm (over head_dim) after the projections, before "
                    "rotary; GQA; theta 1e6; untied"),
    "qwen3_moe": dict(
        model_type="qwen3_moe",
        config=dict(num_experts=6, num_experts_per_tok=2, moe_intermediate_size=16,
                    decoder_sparse_step=1, mlp_only_layers=[2], norm_topk_prob=True,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        moe=True, sharded=True,
        description="Qwen3-MoE: q/k norm as Qwen3; sparse MoE on layers 0, 1, 3 (mlp_only_layers "
                    "[2] is a dense MLP): softmax over 6 experts, top-2, renormalised "
                    "(norm_topk_prob)"),
    "qwen3_moe_step2": dict(
        model_type="qwen3_moe",
        config=dict(num_experts=4, num_experts_per_tok=3, moe_intermediate_size=16,
                    decoder_sparse_step=2, mlp_only_layers=[], norm_topk_prob=False,
                    tie_word_embeddings=True,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        moe=True, bf16=False,
        description="Qwen3-MoE: decoder_sparse_step 2 (layers 1 and 3 sparse), top-3 of 4 not "
                    "renormalised, tied"),
    "gemma3_text": dict(
        model_type="gemma3_text",
        config=dict(num_hidden_layers=5, sliding_window=4, sliding_window_pattern=3,
                    query_pre_attn_scalar=24, hidden_activation="gelu_pytorch_tanh",
                    tie_word_embeddings=True, final_logit_softcapping=None,
                    attn_logit_softcapping=None,
                    rope_parameters={"full_attention": dict(rope_type="linear", factor=8.0,
                                                            rope_theta=1000000.0),
                                     "sliding_attention": dict(rope_type="default",
                                                               rope_theta=10000.0)}),
        sharded=True,
        description="Gemma 3 text: RMSNorm x(1+w) incl. per-head q/k norms; layers 0, 1, 3, 4 "
                    "sliding (window 4), layer 2 global (sliding_window_pattern 3); global rotary "
                    "theta 1e6 with linear scaling 8, local theta 1e4; query_pre_attn_scalar 24; "
                    "embeddings x sqrt(d); sandwich norms (pre/post attention and feed-forward); "
                    "GeGLU tanh; tied"),
    "olmo2": dict(
        model_type="olmo2",
        config=dict(num_key_value_heads=4, rms_norm_eps=1e-6,
                    rope_parameters=dict(rope_type="default", rope_theta=500000.0)),
        description="OLMo 2: no norm before attention or MLP; post_attention_layernorm and "
                    "post_feedforward_layernorm on the branch outputs before the residual add; "
                    "q/k RMSNorm over the whole projection (all heads), before rotary; untied"),
    "olmo3": dict(
        model_type="olmo3",
        config=dict(sliding_window=4, rms_norm_eps=1e-6,
                    rope_parameters=dict(rope_type="default", rope_theta=500000.0)),
        description="OLMo 3: OLMo 2's block with sliding window 4 on layers 0-2 and full "
                    "attention on layer 3 (layer_types); GQA"),
    "smollm3": dict(
        model_type="smollm3",
        config=dict(no_rope_layer_interval=2, tie_word_embeddings=True,
                    rope_parameters=dict(rope_type="default", rope_theta=2000000.0)),
        description="SmolLM3: rotary skipped on every 2nd layer (no_rope_layers [1, 0, 1, 0]: "
                    "layers 1 and 3 are NoPE); GQA; tied"),
    "llama32": dict(
        model_type="llama",
        config=dict(tie_word_embeddings=True, rope_parameters=dict(LLAMA3_ROPE)),
        description="Llama 3.2: tied embeddings; llama3 rope scaling (factor 8, low 1, high 4, "
                    "original 16, theta 5e5, written as rope_parameters)"),
    "mistral_head_dim": dict(
        model_type="mistral",
        config=dict(head_dim=16, num_attention_heads=4, num_key_value_heads=2, sliding_window=None,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        description="Mistral Nemo / Small 3: explicit head_dim 16 with 4 heads of a 32-wide model "
                    "(q 64 wide, o_proj 64 -> 32)"),
    "phi4_mini": dict(
        model_type="phi3",
        config=dict(num_key_value_heads=2, partial_rotary_factor=0.75, tie_word_embeddings=True,
                    original_max_position_embeddings=16, resid_pdrop=0.0, embd_pdrop=0.0,
                    attention_dropout=0.0, hidden_act="silu", sliding_window=None,
                    rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                         partial_rotary_factor=0.75,
                                         short_factor=[1.0, 1.5, 3.0],
                                         long_factor=[1.0, 2.5, 8.0])),
        extra_cases=[("single_len20", [20], False, False)],
        description="Phi-4-mini: phi3 with partial_rotary_factor 0.75 (6 of 8 dims rotate); "
                    "longrope (short factors up to original 16 positions, long beyond, cos/sin "
                    "x sqrt(1 + ln(4)/ln(16))); fused qkv_proj and gate_up_proj; GQA; tied"),
    "granite": dict(
        model_type="granite",
        config=dict(embedding_multiplier=12.0, attention_multiplier=0.125,
                    residual_multiplier=0.22, logits_scaling=4.0, tie_word_embeddings=True,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        lens_post="granite",
        description="Granite: layers_input.0 = token_embeddings x embedding_multiplier 12; "
                    "attention scale attention_multiplier 0.125 (not 1/sqrt(head_dim)); residual "
                    "adds branch x residual_multiplier 0.22; logits = lm_head(x) / logits_scaling 4 "
                    "(the lens divides too); tied"),
    # ---- gpt-oss and DeepSeek-V3: router_probabilities.i are dumped too (router_probs), since
    # their routers are not a plain softmax of router(mlps_input) that the test can recompute.
    "gpt_oss": dict(
        model_type="gpt_oss",
        config=dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=32,
                    sliding_window=4, swiglu_limit=0.9, attention_bias=True,
                    rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0,
                                         beta_fast=32.0, beta_slow=1.0, truncate=False,
                                         original_max_position_embeddings=4096)),
        moe=True, router_probs="softmax", tweak="gpt_oss", mxfp4=True,
        description="gpt-oss: attention sinks (one logit per head, N(0.5, 1) here); sliding "
                    "window 4 on layers 0 and 2, full attention on 1 and 3 (layer_types); GQA; "
                    "q/k/v/o biases; yarn rotary (factor 32, original 4096: the ramp falls inside "
                    "the 4 frequencies; cos/sin x 1.35); every layer MoE: router with bias, top-2 "
                    "of 4 softmaxed, experts with interleaved gate_up + biases and the clamped "
                    "SwiGLU, swiglu_limit 0.9 so that both clamps bite"),
    "deepseek_v3": dict(
        model_type="deepseek_v3",
        config=dict(num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
                    qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=8, n_group=4,
                    topk_group=2, num_experts_per_tok=3, n_shared_experts=1,
                    moe_intermediate_size=16, first_k_dense_replace=1, routed_scaling_factor=2.5,
                    norm_topk_prob=True, rope_interleave=True,
                    rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                         mscale=1.0, mscale_all_dim=1.0, beta_fast=32.0,
                                         beta_slow=1.0, original_max_position_embeddings=16)),
        moe=True, router_probs="sigmoid", tweak="deepseek_v3", sharded=True,
        description="DeepSeek-V3: multi-head latent attention (q_lora_rank 24, kv_lora_rank 16, "
                    "q/k heads of 8 nope + 8 rope dims, value heads of 12), rotary interleaved "
                    "(rope_interleave), yarn factor 4 with mscale_all_dim 1 (scale x 1.14^2); "
                    "layer 0 dense, layers 1-3 MoE: sigmoid scores, 8 experts in 4 groups, top-2 "
                    "groups, top-3 experts on score + e_score_correction_bias (random here), "
                    "renormalised x 2.5, one shared expert"),
    "deepseek_v3_no_q_lora": dict(
        model_type="deepseek_v3",
        config=dict(num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=16, head_dim=4,
                    qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, n_routed_experts=6,
                    n_group=2, topk_group=1, num_experts_per_tok=2, n_shared_experts=2,
                    moe_intermediate_size=8, first_k_dense_replace=2, routed_scaling_factor=1.0,
                    norm_topk_prob=False, rope_interleave=False, attention_bias=True,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        moe=True, router_probs="sigmoid", tweak="deepseek_v3", bf16=False,
        description="DeepSeek-V2-Lite-style V3 config: no q low-rank (q_proj), attention_bias "
                    "(q/kv_a and o biases), half-split rotary, default rope; layers 0-1 dense; "
                    "6 experts in 2 groups, top-1 group, top-2 not renormalised, 2 shared "
                    "experts"),
    "glm4": dict(
        model_type="glm4",
        config=dict(head_dim=16, attention_bias=True, partial_rotary_factor=0.5,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                         partial_rotary_factor=0.5)),
        description="GLM-4 (0414): sandwich norms (post_self_attn_layernorm, "
                    "post_attention_layernorm before the MLP, post_mlp_layernorm); rotary on the "
                    "first half of each 16-dim head, adjacent pairs; q/k/v biases, none on o_proj; "
                    "fused gate_up_proj; GQA"),
}


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def write_mxfp4(src, dst):
    """An MXFP4 copy of a gpt-oss checkpoint, laid out as OpenAI released theirs: each expert stack
    [X, in, out] becomes "<name>_blocks" [X, out, in/32, 16] (two e2m1 nibbles a byte, low first)
    and "<name>_scales" [X, out, in/32] (power-of-two exponents + 127), rounded to nearest with the
    block's scale 2^ceil(log2(max/6)); everything else unchanged; config.json gains
    quantization_config. Its references come from transformers' own dequantizing loader."""
    from safetensors.torch import load_file, save_file
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    sd = load_file(os.path.join(src, "model.safetensors"))
    out = {}
    for k, v in sd.items():
        if not (k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj")):
            out[k] = v
            continue
        t = v.transpose(1, 2).contiguous()
        X, R, C = t.shape
        g = t.reshape(X, R, C // 32, 32)
        e = torch.ceil(torch.log2(g.abs().amax(-1).clamp_min(1e-30) / 6.0)).to(torch.int32)
        idx = ((g / torch.ldexp(torch.ones(()), e)[..., None])[..., None] - E2M1).abs().argmin(-1)
        idx = idx.to(torch.uint8)
        out[k + "_blocks"] = (idx[..., 0::2] | (idx[..., 1::2] << 4)).contiguous()
        out[k + "_scales"] = (e + 127).to(torch.uint8).contiguous()
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(os.path.join(src, "generation_config.json"), dst)


def tweak(entry, model, g):
    """Values randomize() does not reach: gpt-oss's sinks large enough to matter (1-D parameters
    get 0.1 N(0, 1)); DeepSeek's e_score_correction_bias (a buffer, zero by default)."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if entry.get("tweak") == "gpt_oss" and name.endswith("self_attn.sinks"):
                t.copy_(0.5 + torch.randn(t.shape, generator=g))
            if entry.get("tweak") == "deepseek_v3" and name.endswith("e_score_correction_bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))

# Token ids from a fixed draw in [3, 300): valid for every vocabulary here. A right-padded batch with
# a window-crossing row, a full row and a one-token row. (name, lengths, logit lens dumped, in the
# BF16 references too): the logit lens is [T, V] per layer, the bulk of the bytes, so it is dumped for
# one case; BF16 references (a loading check) hold the batch case only.
CASES = [("single_len1", [1], False, False), ("single_len5", [5], False, False),
         ("single_len12", [12], True, False), ("batch3_len7_12_1", [7, 12, 1], False, True)]

TENSOR_DOCS = {
    "token_embeddings": "the raw token-embedding lookup embed_tokens.weight[input_ids]: before "
                        "any scaling (Gemma 3's scaled embedding module and Granite's "
                        "embedding_multiplier come after it)",
    "layers_input.{i}": "residual stream entering decoder layer i (forward pre-hook on the "
                        "layer); layers_input.0 includes embedding scaling",
    "attentions_input.{i}": "hidden_states given to the attention module of layer i (forward "
                            "pre-hook): the output of the norm feeding attention, or the "
                            "residual stream itself where the block has no pre-norm (OLMo 2/3)",
    "attention_probabilities.{i}": "the attention module's weights output (eager): softmax "
                                   "probabilities [B, n_heads, T, T], kv heads broadcast",
    "attentions_output.{i}": "output[0] of the attention module: after o_proj, before any post "
                             "norm, residual multiplier or residual add",
    "mlps_input.{i}": "hidden_states given to the MLP / MoE module of layer i (forward pre-hook)",
    "mlps_output.{i}": "output of the MLP / MoE module: before any post norm, residual multiplier "
                       "or residual add",
    "layers_output.{i}": "output of decoder layer i (forward hook)",
    "ln_final": "output of the final norm module",
    "logits": "CausalLMOutput.logits (Granite: / logits_scaling; Gemma 3: final soft-capping "
              "when configured)",
    "logit_lens.{i}": "softmax(post(lm_head(norm(layers_output.i)))) with the model's own final "
                      "norm, lm_head and logit post-processing, every position",
}


def family_config(entry):
    cfg = dict(BASE)
    cfg.update(copy.deepcopy(entry["config"]))
    return AutoConfig.for_model(entry["model_type"], **cfg)


# ---- Weights ------------------------------------------------------------------------------------

def randomize(model, seed):
    """Random weights scaled so attention is clearly non-uniform: matrices N(0, 1/fan_in) x gain,
    embeddings N(0, 1), norms around their neutral value (1, or 0 for x(1+w) norms), biases small."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.dim() == 1 and "norm" in name:
                neutral = 0.0 if float(p.abs().max()) == 0.0 else 1.0
                gain = 1.6 if ("q_norm" in name or "k_norm" in name) else 1.0
                p.copy_(neutral + (gain - 1.0) + 0.2 * noise)  # x(1+w) norms: w around gain-1
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            elif "embed" in name:
                p.copy_(noise)
            else:
                gain = 1.0
                if any(k in name for k in ("q_proj", "k_proj", "qkv_proj")):
                    gain = 1.7
                if name.endswith("gate.weight") or "router" in name:
                    gain = 1.5
                p.copy_(noise * gain / math.sqrt(p.shape[-1]))


def scale_logits(model, ids, target=2.0):
    """Rescales lm_head (or the tied embedding) so the logits' standard deviation is about target."""
    with torch.no_grad():
        std = float(model(input_ids=ids).logits.std())
        head = model.get_output_embeddings().weight
        head.mul_(target / std)
        return float(model(input_ids=ids).logits.std())


# ---- Dumping ------------------------------------------------------------------------------------

def lens_post(entry, model):
    cfg = model.config
    if entry.get("lens_post") == "granite":
        return lambda x: x / cfg.logits_scaling
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        return lambda x: torch.tanh(x / cap) * cap
    return lambda x: x


def run_hooked(model, entry, ids, mask):
    """{tensor name: float32 array [B, ...]} for one forward pass, plus router logits per layer."""
    out, routers, handles = {}, {}, []
    inner = model.model
    layers = inner.layers

    def pre(name):
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            out[name] = x.detach().clone()
        return hook

    def post(name, index=None):
        def hook(mod, args, output):
            y = output[index] if index is not None else output
            if isinstance(y, tuple):
                y = y[0]
            out[name] = y.detach().clone()
        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre(f"layers_input.{i}"), with_kwargs=True))
        handles.append(layer.self_attn.register_forward_pre_hook(pre(f"attentions_input.{i}"),
                                                                 with_kwargs=True))
        handles.append(layer.self_attn.register_forward_hook(post(f"attentions_output.{i}", 0)))
        handles.append(layer.self_attn.register_forward_hook(
            post(f"attention_probabilities.{i}", 1)))
        handles.append(layer.mlp.register_forward_pre_hook(pre(f"mlps_input.{i}"),
                                                           with_kwargs=True))
        handles.append(layer.mlp.register_forward_hook(post(f"mlps_output.{i}")))
        handles.append(layer.register_forward_hook(post(f"layers_output.{i}")))
        gate = getattr(layer.mlp, "gate", None)
        if gate is None:
            gate = getattr(layer.mlp, "router", None)  # gpt-oss
        if gate is not None and hasattr(layer.mlp, "experts"):
            def rhook(mod, args, output, i=i):
                routers[i] = (output[0] if isinstance(output, tuple) else output).detach().clone()
            handles.append(gate.register_forward_hook(rhook))
    handles.append(inner.norm.register_forward_hook(post("ln_final")))
    try:
        with torch.no_grad():
            res = model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        out["token_embeddings"] = inner.embed_tokens.weight[ids].detach().clone()
        out["logits"] = res.logits.detach().clone()
        post_fn = lens_post(entry, model)
        for i in range(len(layers)):
            h = inner.norm(out[f"layers_output.{i}"])
            out[f"logit_lens.{i}"] = torch.softmax(post_fn(model.lm_head(h)).float(), dim=-1)
    for name in list(out):
        if out[name] is None:
            raise RuntimeError(f"{name}: the module gave no output (eager attention weights?)")
    B = ids.shape[0]
    T = ids.shape[1]
    for k, v in routers.items():
        routers[k] = v.reshape(B, T, -1)
        if entry.get("router_probs") == "softmax":  # gpt-oss: the router's logits include its bias
            out[f"router_probabilities.{k}"] = torch.softmax(routers[k].float(), dim=-1)
        elif entry.get("router_probs") == "sigmoid":  # DeepSeek-V3: sigmoid scores, before bias
            out[f"router_probabilities.{k}"] = torch.sigmoid(routers[k].float())
    return {k: v.float().numpy() for k, v in out.items()}, {k: v.float().numpy()
                                                            for k, v in routers.items()}


def order(names, n_layers):
    per = ["layers_input", "attentions_input", "attention_probabilities", "attentions_output",
           "mlps_input", "router_probabilities", "mlps_output", "layers_output"]
    keys = ["token_embeddings"] + [f"{p}.{i}" for i in range(n_layers) for p in per]
    keys += ["ln_final", "logits"] + [f"logit_lens.{i}" for i in range(n_layers)]
    return [k for k in keys if k in names]


def prompts(entry=None, seed=1234):
    if entry and entry.get("cases_from"):
        return manifest_prompts(entry["cases_from"])
    rng = np.random.default_rng(seed)
    cases = []
    for name, lengths, lens, in_bf16 in CASES + list((entry or {}).get("extra_cases", [])):
        T = max(lengths)
        ids = np.zeros((len(lengths), T), dtype=np.int64)
        mask = np.zeros((len(lengths), T), dtype=np.int64)
        for b, n in enumerate(lengths):
            ids[b, :n] = rng.integers(3, 300, size=n)
            mask[b, :n] = 1
        cases.append((name, ids, mask, lengths, lens, in_bf16))
    return cases


def manifest_prompts(path):
    """The cases of an existing manifest (../shared/reference's), every tensor dumped."""
    with open(path) as f:
        man = json.load(f)
    return [(c["name"], np.array(c["input_ids"], dtype=np.int64),
             np.array(c["attention_mask"], dtype=np.int64), c["lengths"], True, True)
            for c in man["cases"]]


def routing_margin(routers, lengths, k, model=None):
    """Smallest gap, at valid positions, between the k-th and (k+1)-th router probability. For
    DeepSeek-V3's group-limited router, the smaller of the gaps that decide: between the
    topk_group-th and next group score, and between the k-th and next biased score among the
    chosen groups."""
    worst = math.inf
    cfg = model.config if model is not None else None
    if cfg is not None and cfg.model_type == "deepseek_v3":
        for i, r in routers.items():
            bias = model.model.layers[i].mlp.gate.e_score_correction_bias.float().numpy()
            choice = 1.0 / (1.0 + np.exp(-r.astype(np.float64))) + bias
            G, tg = cfg.n_group, cfg.topk_group
            per = choice.shape[-1] // G
            grp = -np.sort(-choice.reshape(*choice.shape[:-1], G, per), axis=-1)[..., :2].sum(-1)
            gs = -np.sort(-grp, axis=-1)
            for b, n in enumerate(lengths):
                if tg < G:
                    worst = min(worst, float((gs[b, :n, tg - 1] - gs[b, :n, tg]).min()))
                for t in range(n):
                    keep = np.argsort(-grp[b, t])[:tg]
                    allowed = np.concatenate([choice[b, t, g * per:(g + 1) * per] for g in keep])
                    srt = -np.sort(-allowed)
                    if k < len(srt):
                        worst = min(worst, float(srt[k - 1] - srt[k]))
        return worst
    for r in routers.values():
        p = torch.softmax(torch.from_numpy(r), dim=-1).numpy()
        s = -np.sort(-p, axis=-1)
        for b, n in enumerate(lengths):
            worst = min(worst, float((s[b, :n, k - 1] - s[b, :n, k]).min()))
    return worst


def dump(model, entry, ref_dir, model_dir_rel, meta, bf16_cases=False):
    """Writes ref_dir/manifest.json and every case's tensors; returns (selfcheck, margin)."""
    if os.path.isdir(ref_dir):
        shutil.rmtree(ref_dir)
    os.makedirs(ref_dir)
    cfg = model.config
    L = cfg.num_hidden_layers
    manifest = dict(
        format="raw little-endian IEEE float32, C (row-major) order, no header; shapes in this "
               "manifest",
        model_type=cfg.model_type, num_layers=L, versions=versions(), compute_dtype="float32",
        attn_implementation="eager",
        padding="right padding; padded positions have input id 0 and attention_mask 0; outputs "
                "at padded positions are whatever HF computes there and should be ignored",
        tensor_docs=TENSOR_DOCS, model_dir=model_dir_rel, generator="tools/reference/"
        "make_reference.py", **meta, cases=[])
    selfcheck, margin = {}, math.inf
    k = getattr(cfg, "num_experts_per_tok", 0)
    for name, ids, mask, lengths, lens, in_bf16 in prompts(entry):
        if bf16_cases and not in_bf16:
            continue
        tens, routers = run_hooked(model, entry, torch.from_numpy(ids), torch.from_numpy(mask))
        if routers:
            margin = min(margin, routing_margin(routers, lengths, k, model))
        if len(lengths) > 1:  # each row alone must give the same valid positions
            worst = 0.0
            for b, n in enumerate(lengths):
                alone, _ = run_hooked(model, entry, torch.from_numpy(ids[b:b + 1, :n]),
                                      torch.from_numpy(mask[b:b + 1, :n]))
                for t, v in alone.items():
                    ref = tens[t][b:b + 1]
                    if t.startswith("attention_probabilities"):
                        ref = ref[:, :, :n, :n]
                    else:
                        ref = ref[:, :n]
                    worst = max(worst, float(np.abs(ref - v).max()))
            selfcheck[name] = {"batch_row_vs_single_prompt_max_abs_diff": worst}
        os.makedirs(os.path.join(ref_dir, name))
        tensors = {}
        for t in order(tens, L):
            if t.startswith("logit_lens.") and not lens:
                continue
            rel = f"{name}/{t}.f32"
            arr = np.ascontiguousarray(tens[t], dtype="<f4")
            arr.tofile(os.path.join(ref_dir, rel))
            tensors[t] = dict(file=rel, shape=list(arr.shape), dtype="float32")
        manifest["cases"].append(dict(name=name, input_ids=ids.tolist(),
                                      attention_mask=mask.tolist(), lengths=list(lengths),
                                      tensors=tensors))
    manifest["selfcheck"] = selfcheck
    if margin != math.inf:
        manifest["moe_min_routing_margin"] = margin
    with open(os.path.join(ref_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return selfcheck, margin


def versions():
    return {"transformers": transformers.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def load_f32(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                attn_implementation="eager").eval()


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


MIN_MARGIN = 3e-4


def make_family(name, entry, out_root, seed):
    """Writes one family; a MoE family retries seeds until its routing margin is MIN_MARGIN."""
    for s in range(seed, seed + 100):
        summary = make_family_seed(name, entry, out_root, s)
        if not entry.get("moe") or summary["moe_min_routing_margin"] >= MIN_MARGIN:
            return summary
    sys.exit(f"{name}: no seed in [{seed}, {seed + 100}) gives a routing margin of {MIN_MARGIN}")


def make_family_seed(name, entry, out_root, seed):
    root = os.path.join(out_root, name)
    os.makedirs(root, exist_ok=True)
    cfg = family_config(entry)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    randomize(model, seed)
    tweak(entry, model, torch.Generator().manual_seed(seed + 1))
    if cfg.tie_word_embeddings:
        model.tie_weights()
    probe = torch.from_numpy(prompts()[2][1])
    logits_std = scale_logits(model, probe)
    summary = dict(arch=name, model_type=cfg.model_type, seed=seed,
                   description=entry["description"], versions=versions(),
                   logits_std=logits_std, dirs={})
    f32_dir = os.path.join(root, "model-f32")
    shutil.rmtree(f32_dir, ignore_errors=True)
    model.save_pretrained(f32_dir)
    reloaded = load_f32(f32_dir)
    reload_diff = max(float((a - b).abs().max()) for a, b in
                      zip(model.state_dict().values(), reloaded.state_dict().values()))
    summary["reload_max_abs_diff"] = reload_diff
    meta = dict(arch=name, seed=seed, weights_dtype="float32",
                note="weights loaded with from_pretrained(dtype=float32); compute in float32")
    sc, margin = dump(reloaded, entry, os.path.join(root, "ref-f32"), "../model-f32", meta)
    summary["dirs"]["f32"] = dict(model_dir="model-f32", bytes=dir_bytes(f32_dir),
                                  ref_dir="ref-f32", selfcheck=sc)
    if entry.get("moe"):
        summary["moe_min_routing_margin"] = margin
    if entry.get("sharded"):
        sh = os.path.join(root, "model-f32-sharded")
        shutil.rmtree(sh, ignore_errors=True)
        reloaded.save_pretrained(sh, max_shard_size="200KB")
        summary["dirs"]["sharded"] = dict(model_dir="model-f32-sharded", bytes=dir_bytes(sh),
                                          shards=len([f for f in os.listdir(sh)
                                                      if f.endswith(".safetensors")]))
    if entry.get("bf16", True):
        bf = os.path.join(root, "model-bf16")
        shutil.rmtree(bf, ignore_errors=True)
        copy_bf16 = copy.deepcopy(reloaded).to(torch.bfloat16)
        copy_bf16.save_pretrained(bf)
        up = load_f32(bf)
        rounding = max(float((a - b).abs().max()) for a, b in
                       zip(reloaded.state_dict().values(), up.state_dict().values()))
        meta_bf = dict(meta, weights_dtype="bfloat16",
                       note="bf16 checkpoint loaded with from_pretrained(dtype=float32): the "
                            "weights upcast exactly, compute in float32")
        sc_bf, _ = dump(up, entry, os.path.join(root, "ref-bf16"), "../model-bf16", meta_bf,
                        bf16_cases=True)
        summary["dirs"]["bf16"] = dict(model_dir="model-bf16", bytes=dir_bytes(bf),
                                       ref_dir="ref-bf16", max_abs_weight_rounding=rounding,
                                       selfcheck=sc_bf)
    if entry.get("mxfp4"):
        from transformers import Mxfp4Config
        mx = os.path.join(root, "model-mxfp4")
        write_mxfp4(f32_dir, mx)
        up = AutoModelForCausalLM.from_pretrained(
            mx, dtype=torch.float32, attn_implementation="eager",
            quantization_config=Mxfp4Config(dequantize=True)).eval()
        meta_mx = dict(meta, weights_dtype="mxfp4 experts, float32 elsewhere",
                       note="MXFP4 checkpoint loaded with from_pretrained(dtype=float32, "
                            "Mxfp4Config(dequantize=True)): transformers' own dequantization")
        sc_mx, margin_mx = dump(up, entry, os.path.join(root, "ref-mxfp4"), "../model-mxfp4",
                                meta_mx, bf16_cases=True)
        summary["dirs"]["mxfp4"] = dict(model_dir="model-mxfp4", bytes=dir_bytes(mx),
                                        ref_dir="ref-mxfp4", selfcheck=sc_mx,
                                        moe_min_routing_margin=margin_mx)
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help="entries of FAMILIES (default: all)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                  "reference"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="dump references of this existing checkpoint instead")
    ap.add_argument("--cases-from", help="with --checkpoint: the prompts of this manifest.json")
    ap.add_argument("--resave", help="with --checkpoint: also save_pretrained the loaded model "
                                     "here (the checkpoint as this transformers writes it)")
    ap.add_argument("--list", action="store_true", help="list the families and exit")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.list:
        for n, e in FAMILIES.items():
            print(f"{n:18s} {e['model_type']:12s} {e['description']}")
        return 0
    if a.checkpoint:
        model = load_f32(a.checkpoint)
        entry = dict(lens_post="granite" if model.config.model_type == "granite" else None,
                     cases_from=a.cases_from)
        if a.resave:
            shutil.rmtree(a.resave, ignore_errors=True)
            model.save_pretrained(a.resave)
        rel = os.path.relpath(os.path.abspath(a.checkpoint), os.path.abspath(a.out))
        dump(model, entry, a.out, rel, dict(arch=model.config.model_type, seed=None,
                                           weights_dtype=str(model.config.dtype)))
        print(f"{a.checkpoint} -> {a.out}")
        return 0
    names = a.families or list(FAMILIES)
    for n in names:
        if n not in FAMILIES:
            sys.exit(f"unknown family {n!r} (known: {', '.join(FAMILIES)})")
    for n in names:
        s = make_family(n, FAMILIES[n], a.out, a.seed)
        size = dir_bytes(os.path.join(a.out, n))
        extra = f", routing margin {s['moe_min_routing_margin']:.2e}" if "moe_min_routing_margin" \
            in s else ""
        print(f"{n}: {size / 1e6:.2f} MB, logits std {s['logits_std']:.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
