#!/usr/bin/env python3
"""Makes the SAE fixtures of tests/sae/: small random SAEs of every architecture this project runs,
saved by SAELens itself, with SAELens's own encode/decode on real activations of the shared models.

Run by hand (needs PyPI packages; tests never do):
    python3 -m venv /work/venv-sae && /work/venv-sae/bin/pip install torch==2.13.0 sae-lens
    /work/venv-sae/bin/python tools/make_sae_fixtures.py ../shared tests/sae

Each case directory holds the SAE (cfg.json + sae_weights.safetensors, or sparsify's
cfg.json + sae.safetensors) and expected.safetensors:
    x      [T, d_in]   the activation at the SAE's hook, from the Hugging Face model (hooks on its
                       modules), what this project's hook point must give
    acts   [T, d_sae]  SAELens's encode(x), dense
    recon  [T, d_out]  SAELens's decode(encode(x)) (forward() for skip transcoders)
    target [T, d_out]  transcoders: the activation at the output hook
and case.json: model directory (relative to shared/), token ids, the hook names.

sparsify (EleutherAI) is not on PyPI; its case is computed here from sparsify's definition
(x - b_dec, relu(encoder(x)), top-k, top_acts @ W_dec[top_idx] + b_dec) in float64.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from sae_lens import SAE

torch.manual_seed(0)
SHARED, OUT = sys.argv[1], sys.argv[2]

TOKENS = {
    "stories": [1, 403, 407, 261, 1217, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
}


def tokens_for(model):
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, V, (14,), generator=g).tolist()


def gainless(x, layernorm, eps):
    x = x.double()
    if layernorm:
        x = x - x.mean(-1, keepdim=True)
        return (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)).float()
    return (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)).float()


def capture(model_dir, ids):
    """Every hook this project maps, from the HF modules: {name: [T, d]}."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    mt = model.config.model_type
    out = {}
    hooks = []
    if mt == "gpt2":
        blocks = model.transformer.h
        norms = ("ln_1", "ln_2")
        post = (None, None)
        eps = model.config.layer_norm_epsilon
        layernorm = True
    else:
        blocks = model.model.layers
        if mt == "gemma2":
            norms = ("input_layernorm", "pre_feedforward_layernorm")
            post = ("post_attention_layernorm", "post_feedforward_layernorm")
        else:
            norms = ("input_layernorm", "post_attention_layernorm")
            post = (None, None)
        eps = model.config.rms_norm_eps
        layernorm = False

    def save(name, t):
        out[name] = t[0].detach().clone()
        return None

    for l, blk in enumerate(blocks):
        n1, n2 = getattr(blk, norms[0]), getattr(blk, norms[1])
        def pre_attn(m, i, o, l=l):
            save(f"layers_input.{l}", i[0])
            save(f"attentions_normalized.{l}", gainless(i[0], layernorm, eps))

        def pre_mlp(m, i, o, l=l):
            save(f"layers_middle.{l}", i[0])
            save(f"mlps_normalized.{l}", gainless(i[0], layernorm, eps))
            save(f"mlps_input.{l}", o)

        hooks.append(n1.register_forward_hook(pre_attn))
        hooks.append(n2.register_forward_hook(pre_mlp))
        mlp = blk.mlp
        hooks.append(mlp.register_forward_hook(lambda m, i, o, l=l: save(f"mlps_output.{l}", o)))
        attn = blk.attn if mt == "gpt2" else blk.self_attn
        hooks.append(attn.register_forward_hook(
            lambda m, i, o, l=l: save(f"attentions_output.{l}", o[0] if isinstance(o, tuple) else o)))
        if post[0]:
            hooks.append(getattr(blk, post[0]).register_forward_hook(
                lambda m, i, o, l=l: save(f"attentions_residual.{l}", o)))
            hooks.append(getattr(blk, post[1]).register_forward_hook(
                lambda m, i, o, l=l: save(f"mlps_residual.{l}", o)))
    emb = model.get_input_embeddings()
    hooks.append(emb.register_forward_hook(lambda m, i, o: save("token_embeddings", o)))
    with torch.no_grad():
        res = model(torch.tensor([ids]), output_hidden_states=True)
    for h in hooks:
        h.remove()
    for l in range(len(blocks)):
        out[f"layers_output.{l}"] = res.hidden_states[l + 1][0].clone()
        if f"attentions_residual.{l}" not in out:
            out[f"attentions_residual.{l}"] = out[f"attentions_output.{l}"]
            out[f"mlps_residual.{l}"] = out[f"mlps_output.{l}"]
    if mt == "gemma2":  # hidden_states[0] is after the embedding scale; the hook is before it
        pass
    return out


def randomize(sae, d_in, scale_in):
    """Weights that leave a fair share of features active on these activations."""
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name in ("W_enc",):
                p.copy_(torch.randn_like(p) / (d_in ** 0.5) / scale_in)
            elif name == "W_dec":
                p.copy_(torch.randn_like(p) / (p.shape[0] ** 0.5))
            elif name == "W_skip":
                p.copy_(torch.randn_like(p) * 0.05)
            elif name == "threshold":
                p.copy_(torch.rand_like(p) * 0.3)
            elif name == "r_mag":
                p.copy_(torch.randn_like(p) * 0.2)
            else:  # biases
                p.copy_(torch.randn_like(p) * 0.1)


def saelens_case(name, model_rel, ids, acts, arch, hook, d_sae, hook_out=None, **extra):
    model_dir = os.path.join(SHARED, model_rel)
    ours_in = extra.pop("ours_in")
    ours_out = extra.pop("ours_out", None)
    x = acts[ours_in]
    d_in = x.shape[1]
    cfg = {
        "architecture": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": extra.pop("apply_b_dec_to_input", True),
        "normalize_activations": extra.pop("normalize_activations", "none"),
        "metadata": {"model_name": model_rel, "hook_name": hook, "hook_head_index": None,
                     "model_from_pretrained_kwargs": extra.pop("kwargs", {})},
    }
    if hook_out:
        cfg["d_out"] = d_in
        cfg["apply_b_dec_to_input"] = False
        cfg["metadata"]["hook_name_out"] = hook_out
    cfg.update(extra)
    sae = SAE.from_dict(cfg)
    randomize(sae, d_in, float(x.norm(dim=-1).mean()) / d_in ** 0.5)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    sae.save_model(d)
    sae = SAE.load_from_disk(d, device="cpu")
    sae.eval()
    xin = x.clone()
    if cfg["metadata"]["model_from_pretrained_kwargs"].get("center_writing_weights"):
        xin = xin - xin.mean(-1, keepdim=True)
    with torch.no_grad():
        f = sae.encode(xin)
        r = sae.forward(xin) if "skip" in arch else sae.decode(f)
    tensors = {"x": x.contiguous(), "acts": f.contiguous(), "recon": r.contiguous()}
    if ours_out:
        tensors["target"] = acts[ours_out].contiguous()
    save_file(tensors, os.path.join(d, "expected.safetensors"))
    case = {"model": model_rel, "tokens": ids, "hook": hook, "point": ours_in,
            "point_out": ours_out, "architecture": arch,
            "active_fraction": float((f != 0).float().mean())}
    json.dump(case, open(os.path.join(d, "case.json"), "w"), indent=1)
    print(name, arch, hook, "->", ours_in, "active", case["active_fraction"])


def sparsify_case(name, model_rel, ids, acts, layer, d_sae, k):
    x = acts[f"layers_output.{layer}"]
    d_in = x.shape[1]
    enc_w = torch.randn(d_sae, d_in) / d_in ** 0.5
    enc_b = torch.randn(d_sae) * 0.1
    W_dec = torch.randn(d_sae, d_in) / d_sae ** 0.5
    b_dec = torch.randn(d_in) * 0.1
    d = os.path.join(OUT, name, f"layers.{layer}")
    os.makedirs(d, exist_ok=True)
    save_file({"encoder.weight": enc_w, "encoder.bias": enc_b, "W_dec": W_dec, "b_dec": b_dec},
              os.path.join(d, "sae.safetensors"))
    json.dump({"expansion_factor": d_sae // d_in, "normalize_decoder": True, "num_latents": d_sae,
               "k": k, "multi_topk": False, "skip_connection": False, "transcode": False,
               "d_in": d_in}, open(os.path.join(d, "cfg.json"), "w"))
    pre = torch.relu((x.double() - b_dec.double()) @ enc_w.double().T + enc_b.double())
    vals, idx = pre.topk(k, dim=-1)
    acts_d = torch.zeros_like(pre).scatter_(-1, idx, vals)
    recon = acts_d @ W_dec.double() + b_dec.double()
    save_file({"x": x.contiguous(), "acts": acts_d.float().contiguous(),
               "recon": recon.float().contiguous()}, os.path.join(d, "expected.safetensors"))
    json.dump({"model": model_rel, "tokens": ids, "hook": f"layers.{layer}",
               "point": f"layers_output.{layer}", "point_out": None, "architecture": "sparsify",
               "active_fraction": float((acts_d != 0).double().mean())},
              open(os.path.join(d, "case.json"), "w"), indent=1)
    print(name, "sparsify topk", k)


stories = "models/stories260K/hf"
ids = tokens_for(AutoModelForCausalLM.from_pretrained(os.path.join(SHARED, stories)))
a = capture(os.path.join(SHARED, stories), ids)
saelens_case("stories_standard", stories, ids, a, "standard", "blocks.2.hook_resid_post", 256,
             ours_in="layers_output.2")
saelens_case("stories_jumprelu", stories, ids, a, "jumprelu", "blocks.1.ln2.hook_normalized", 512,
             ours_in="mlps_normalized.1")
saelens_case("stories_topk", stories, ids, a, "topk", "blocks.3.hook_resid_mid", 256, k=12,
             normalize_activations="constant_norm_rescale", ours_in="layers_middle.3")
saelens_case("stories_transcoder", stories, ids, a, "skip_transcoder", "blocks.4.hook_mlp_in", 256,
             hook_out="blocks.4.hook_mlp_out", ours_in="layers_middle.4", ours_out="mlps_residual.4")
sparsify_case("stories_sparsify", stories, ids, a, 1, 256, 16)

gpt2 = "reference/tiny/gpt2/model-f32"
m = AutoModelForCausalLM.from_pretrained(os.path.join(SHARED, gpt2))
ids = tokens_for(m)
a = capture(os.path.join(SHARED, gpt2), ids)
saelens_case("gpt2_gated", gpt2, ids, a, "gated", "blocks.1.hook_resid_pre", 256,
             normalize_activations="layer_norm", ours_in="layers_input.1",
             kwargs={"center_writing_weights": True})
saelens_case("gpt2_standard_embed", gpt2, ids, a, "standard", "hook_embed", 256,
             apply_b_dec_to_input=False, ours_in="token_embeddings")

gemma2 = "reference/tiny/gemma2/model-f32"
m = AutoModelForCausalLM.from_pretrained(os.path.join(SHARED, gemma2))
ids = tokens_for(m)
a = capture(os.path.join(SHARED, gemma2), ids)
saelens_case("gemma2_attn_out", gemma2, ids, a, "standard", "blocks.1.hook_attn_out", 256,
             ours_in="attentions_residual.1")
saelens_case("gemma2_transcoder", gemma2, ids, a, "jumprelu_transcoder",
             "blocks.2.ln2.hook_normalized", 512, hook_out="blocks.2.hook_mlp_out",
             ours_in="mlps_normalized.2", ours_out="mlps_residual.2")

# LayerNorm's gain-free normalization (GPT-2 ln_1): attentions_normalized
m = AutoModelForCausalLM.from_pretrained(os.path.join(SHARED, gpt2))
ids = tokens_for(m)
a = capture(os.path.join(SHARED, gpt2), ids)
saelens_case("gpt2_ln1_jumprelu", gpt2, ids, a, "jumprelu", "blocks.0.ln1.hook_normalized", 256,
             ours_in="attentions_normalized.0")
