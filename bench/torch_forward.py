#!/usr/bin/env python3
"""The PyTorch side of the forward-pass benchmark (bench/run.sh).

Loads a Hugging Face GPT-2 or Llama checkpoint directory (config.json + model.safetensors, as
tools/make_random_checkpoint.py writes) into a minimal PyTorch model that follows the eager code
of Hugging Face transformers (GPT2LMHeadModel, LlamaForCausalLM) op for op, registers a forward
hook on every block that copies the block's output (layers_output) into a preallocated CPU tensor,
the way nnsight/nnterp users collect activations, and times the whole forward, including the
logits of every position (HF's forward computes them all).

No `transformers` or `safetensors` package is needed: the checkpoint is parsed with numpy.

Usage: /usr/bin/python3 bench/torch_forward.py MODEL_DIR [--batch 8] [--tokens 128] [--reps 5]
           [--threads 1] [--dtype float32|bfloat16]

--dtype bfloat16 runs the model as Hugging Face does with torch_dtype=torch.bfloat16 (weights and
activations in bfloat16, softmax in float32 for Llama as its eager attention does; the mask and
rotary tables cast to bfloat16); torch's CPU matmul in bfloat16 is oneDNN's.
Prints one JSON object on stdout.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_safetensors(path):
    """{name: float32 torch tensor}. Only F32/F16/BF16 are expected from our tool and the hub."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        if info["dtype"] == "F32":
            arr = raw.view("<f4")
        elif info["dtype"] == "F16":
            arr = raw.view("<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} is not supported")
        out[name] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(info["shape"]))
    return out


# ---- GPT-2 (transformers' modeling_gpt2.py, eager attention) ------------------------------------

class Conv1D(nn.Module):
    """HF's Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.weight.size(-1),)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class NewGELU(nn.Module):
    """HF's gelu_new, written out as transformers does (not the fused torch kernel)."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                           (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, P = cfg["n_embd"], cfg["n_positions"]
        self.n_head, self.head_dim = cfg["n_head"], d // cfg["n_head"]
        self.register_buffer("bias", torch.tril(torch.ones((P, P), dtype=torch.bool))
                             .view(1, 1, P, P), persistent=False)
        self.c_attn = Conv1D(d, 3 * d)
        self.c_proj = Conv1D(d, d)

    def _split_heads(self, x):
        return x.view(x.size()[:-1] + (self.n_head, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, x, pad_mask=None):
        q, k, v = self.c_attn(x).split(x.size(-1), dim=2)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype, device=w.device)
        T = q.size(-2)
        mask = self.bias[:, :, :T, :T]
        w = torch.where(mask, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        if pad_mask is not None:  # HF adds (1 - attention_mask) * min for padded keys
            w = w + pad_mask
        w = F.softmax(w, dim=-1)
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return self.c_proj(a.view(a.size()[:-2] + (self.n_head * self.head_dim,)))


class GPT2MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        ff = cfg.get("n_inner") or 4 * d
        self.c_fc, self.c_proj, self.act = Conv1D(d, ff), Conv1D(ff, d), NewGELU()

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["n_embd"], cfg.get("layer_norm_epsilon", 1e-5)
        self.ln_1, self.attn = nn.LayerNorm(d, eps=eps), GPT2Attention(cfg)
        self.ln_2, self.mlp = nn.LayerNorm(d, eps=eps), GPT2MLP(cfg)

    def forward(self, x, pad_mask=None):
        x = x + self.attn(self.ln_1(x), pad_mask)
        x = x + self.mlp(self.ln_2(x))
        return (x,)  # HF blocks return a tuple; hooks see output[0]


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=cfg.get("layer_norm_epsilon", 1e-5))
        self.lm_head = nn.Linear(d, cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    @property
    def blocks(self):
        return self.h

    def load(self, t):
        prefix = "transformer." if "transformer.wte.weight" in t else ""
        sd = {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}
        sd["lm_head.weight"] = sd["wte.weight"]
        self.load_state_dict(sd, strict=True)

    def forward(self, ids, attention_mask=None):
        """attention_mask [B, T] (1 = token, 0 = left padding), as a tokenizer returns it; the
        positions then count real tokens only, as HF computes them for a padded batch."""
        pad_mask = None
        if attention_mask is None:
            pos = torch.arange(ids.size(-1), dtype=torch.long).unsqueeze(0)
        else:
            pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            dt = self.wte.weight.dtype  # as HF: the mask in the model's dtype (bf16 under bf16)
            pad_mask = ((1.0 - attention_mask.to(dt)) * torch.finfo(dt).min)[:, None, None, :]
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x, pad_mask)[0]
        return self.lm_head(self.ln_f(x))


# ---- Llama (transformers' modeling_llama.py, eager attention) -----------------------------------

class LlamaRMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        # as transformers' LlamaRMSNorm: in float32, back to the input's dtype before the weight
        # (the same ops in a float32 model)
        dt, x = x.dtype, x.to(torch.float32)
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps)).to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.G = cfg.get("num_key_value_heads", self.H)
        self.E = cfg.get("head_dim", d // self.H)
        self.q_proj = nn.Linear(d, self.H * self.E, bias=False)
        self.k_proj = nn.Linear(d, self.G * self.E, bias=False)
        self.v_proj = nn.Linear(d, self.G * self.E, bias=False)
        self.o_proj = nn.Linear(self.H * self.E, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.E).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.G, self.E).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.G, self.E).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.G != self.H:  # repeat_kv
            r = self.H // self.G
            k = k[:, :, None].expand(B, self.G, r, T, self.E).reshape(B, self.H, T, self.E)
            v = v[:, :, None].expand(B, self.G, r, T, self.E).reshape(B, self.H, T, self.E)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.E) + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, T, self.H * self.E)
        return self.o_proj(a)


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, ff = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg.get("rms_norm_eps", 1e-6)
        self.input_layernorm, self.self_attn = LlamaRMSNorm(d, eps), LlamaAttention(cfg)
        self.post_attention_layernorm, self.mlp = LlamaRMSNorm(d, eps), LlamaMLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return (x,)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        self.layers = nn.ModuleList(LlamaDecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = LlamaRMSNorm(d, cfg.get("rms_norm_eps", 1e-6))
        self.lm_head = nn.Linear(d, cfg["vocab_size"], bias=False)
        self.tied = cfg.get("tie_word_embeddings", False)
        if self.tied:
            self.lm_head.weight = self.embed_tokens.weight
        E = cfg.get("head_dim", d // cfg["num_attention_heads"])
        theta = cfg.get("rope_theta", 10000.0)
        self.register_buffer("inv_freq", 1.0 / (theta ** (torch.arange(0, E, 2).float() / E)),
                             persistent=False)

    @property
    def blocks(self):
        return self.layers

    def load(self, t):
        sd = {k[len("model."):] if k.startswith("model.") else k: v for k, v in t.items()}
        if self.tied:
            sd["lm_head.weight"] = sd["embed_tokens.weight"]
        self.load_state_dict(sd, strict=True)

    def forward(self, ids):
        T = ids.size(-1)
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        dt = self.embed_tokens.weight.dtype
        cos, sin = emb.cos()[None, None].to(dt), emb.sin()[None, None].to(dt)
        mask = torch.full((T, T), torch.finfo(dt).min, dtype=dt).triu(1)[None, None]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)[0]
        return self.lm_head(self.norm(x))


# ---- The benchmark --------------------------------------------------------------------------------

def bench_tokens(batch, tokens, vocab):
    """The ids bench_forward.c uses too: token i of the packed batch is (i+1)*2654435761 mod 2^32
    mod vocab, so both sides run the same prompts and their logits can be compared."""
    i = np.arange(1, batch * tokens + 1, dtype=np.uint64)
    ids = (i * np.uint64(2654435761)) % np.uint64(1 << 32) % np.uint64(vocab)
    return torch.from_numpy(ids.astype(np.int64).reshape(batch, tokens))


def main():
    ap = argparse.ArgumentParser(description="PyTorch forward-pass benchmark with hooks")
    ap.add_argument("model_dir")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    kinds = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}
    if cfg.get("model_type") not in kinds:
        sys.exit(f"error: model_type {cfg.get('model_type')!r} is not supported here")
    t0 = time.perf_counter()
    model = kinds[cfg["model_type"]](cfg)
    model.load(load_safetensors(os.path.join(a.model_dir, "model.safetensors")))
    model.eval()
    if a.dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    load_s = time.perf_counter() - t0

    ids = bench_tokens(a.batch, a.tokens, cfg["vocab_size"])
    d = cfg.get("n_embd") or cfg["hidden_size"]
    capture = torch.empty(len(model.blocks), a.batch, a.tokens, d)

    def make_hook(layer):
        def hook(module, inputs, output):
            capture[layer].copy_(output[0] if isinstance(output, tuple) else output)
        return hook

    handles = [b.register_forward_hook(make_hook(i)) for i, b in enumerate(model.blocks)]

    runs, logits = [], None
    with torch.no_grad():
        for r in range(a.reps + 1):  # run 0 warms caches and the allocator
            t = time.perf_counter()
            logits = model(ids)
            dt = time.perf_counter() - t
            if r > 0:
                runs.append(dt)
    for h in handles:
        h.remove()

    n = a.batch * a.tokens
    med = statistics.median(runs)
    print(json.dumps({
        "impl": "pytorch",
        "dtype": a.dtype,
        "torch": torch.__version__,
        "model": os.path.abspath(a.model_dir),
        "model_type": cfg["model_type"],
        "batch": a.batch, "tokens": a.tokens, "threads": a.threads, "reps": a.reps,
        "load_s": load_s,
        "tokens_per_s_median": n / med,
        "seconds_median": med,
        "runs": [n / s for s in runs],
        # Last-position logits of each sequence, first 4 columns: run.sh compares them with nnterp.
        "check": logits[:, -1, :4].reshape(-1).tolist(),
        "capture_check": float(capture[-1, :, -1].abs().sum()),
    }))


if __name__ == "__main__":
    main()
