#!/usr/bin/env python3
"""Writes a random-weight Hugging Face checkpoint directory (config.json + model.safetensors, or
shards of at most --shard-gb GB with model.safetensors.index.json, as Hugging Face writes them).

The benchmarks need a model of a real shape (GPT-2 small, a small Llama) without downloading one,
and the container has neither `safetensors` nor `transformers`, so the safetensors format is
written here by hand: an 8-byte little-endian header length, a JSON header mapping each name to
{"dtype", "shape", "data_offsets"}, then the raw little-endian data. Weights are float32
normal * 0.02 from numpy's default_rng(seed), norm weights 1 and biases 0, so the same arguments
always give the same bytes. --dtype BF16 stores them rounded to bfloat16 (nearest even), as a
checkpoint saved in torch.bfloat16. Tensors are generated and written in blocks of rows, so the
process holds a few hundred MB whatever the model's size (a 16 GB Llama-3-8B shape included).

Usage:
  /usr/bin/python3 tools/make_random_checkpoint.py --out DIR [--arch gpt2] --d 768 --layers 12 \
      --heads 12 --vocab 50257 --positions 1024 --seed 0
  /usr/bin/python3 tools/make_random_checkpoint.py --out DIR --arch llama --d 2048 --layers 16 \
      --heads 32 --kv-heads 8 --ff 8192 --vocab 32000 --positions 2048
  /usr/bin/python3 tools/make_random_checkpoint.py --out /work/big/llama3-8b --preset llama3-8b
      (32 layers, d 4096, 32 heads, 8 kv heads, MLP 14336, vocab 128256, rope_scaling llama3,
       BF16, 4 shards of <= 5 GB)
"""
import argparse
import json
import os
import sys

import numpy as np


def gpt2_tensors(a):
    """(name, shape, kind) in file order; kind is 'normal', 'ones' or 'zeros'."""
    d, ff = a.d, a.ff or 4 * a.d
    t = [("transformer.wte.weight", [a.vocab, d], "normal"),
         ("transformer.wpe.weight", [a.positions, d], "normal")]
    for i in range(a.layers):
        p = f"transformer.h.{i}."
        # Conv1D layers store their weight [in, out].
        t += [(p + "ln_1.weight", [d], "ones"), (p + "ln_1.bias", [d], "zeros"),
              (p + "attn.c_attn.weight", [d, 3 * d], "normal"),
              (p + "attn.c_attn.bias", [3 * d], "zeros"),
              (p + "attn.c_proj.weight", [d, d], "normal"),
              (p + "attn.c_proj.bias", [d], "zeros"),
              (p + "ln_2.weight", [d], "ones"), (p + "ln_2.bias", [d], "zeros"),
              (p + "mlp.c_fc.weight", [d, ff], "normal"), (p + "mlp.c_fc.bias", [ff], "zeros"),
              (p + "mlp.c_proj.weight", [ff, d], "normal"),
              (p + "mlp.c_proj.bias", [d], "zeros")]
    t += [("transformer.ln_f.weight", [d], "ones"), ("transformer.ln_f.bias", [d], "zeros")]
    return t  # tied head: no lm_head.weight


def gpt2_config(a):
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": a.d,
           "n_head": a.heads, "n_layer": a.layers, "n_positions": a.positions,
           "n_ctx": a.positions, "vocab_size": a.vocab, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new", "bos_token_id": 50256 % a.vocab,
           "eos_token_id": 50256 % a.vocab, "torch_dtype": "float32"}
    if a.ff:
        cfg["n_inner"] = a.ff
    return cfg


def llama_tensors(a):
    d, ff = a.d, a.ff or 4 * a.d
    hd = d // a.heads
    kvd = a.kv_heads * hd
    t = [("model.embed_tokens.weight", [a.vocab, d], "normal")]
    for i in range(a.layers):
        p = f"model.layers.{i}."
        # nn.Linear layers store their weight [out, in].
        t += [(p + "input_layernorm.weight", [d], "ones"),
              (p + "self_attn.q_proj.weight", [d, d], "normal"),
              (p + "self_attn.k_proj.weight", [kvd, d], "normal"),
              (p + "self_attn.v_proj.weight", [kvd, d], "normal"),
              (p + "self_attn.o_proj.weight", [d, d], "normal"),
              (p + "post_attention_layernorm.weight", [d], "ones"),
              (p + "mlp.gate_proj.weight", [ff, d], "normal"),
              (p + "mlp.up_proj.weight", [ff, d], "normal"),
              (p + "mlp.down_proj.weight", [d, ff], "normal")]
    t += [("model.norm.weight", [d], "ones"), ("lm_head.weight", [a.vocab, d], "normal")]
    return t


def llama_config(a):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.d,
            "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
            "num_hidden_layers": a.layers, "intermediate_size": a.ff or 4 * a.d,
            "max_position_embeddings": a.positions, "vocab_size": a.vocab,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
            "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 1 % a.vocab,
            "eos_token_id": 2 % a.vocab, "torch_dtype": "float32"}
    if a.rope_scaling == "llama3":  # Llama 3.1's published values
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        cfg["rope_theta"] = 500000.0
    return cfg


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (what torch's .to(torch.bfloat16) does)."""
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)) \
        .astype("<u2")


ROWS_PER_BLOCK_ELEMS = 1 << 25  # 32M elements (128 MB of float32) generated at a time


def write_safetensors(path, tensors, rng, dtype, seed):
    """Streams tensor by tensor, block of rows by block, so a large model never sits in memory."""
    esize = 2 if dtype == "BF16" else 4
    header, off = {}, 0
    for name, shape, _ in tensors:
        n = int(np.prod(shape)) * esize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt", "generator": f"make_random_checkpoint seed={seed}"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    # Pad with spaces so the data starts 8-byte aligned (readers may map float32 in place).
    hb += b" " * (-(8 + len(hb)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for name, shape, kind in tensors:
            row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            rows_per = max(1, ROWS_PER_BLOCK_ELEMS // row)
            for r0 in range(0, shape[0], rows_per):
                sub = [min(rows_per, shape[0] - r0)] + list(shape[1:])
                if kind == "normal":
                    x = rng.standard_normal(sub, dtype=np.float32)
                    x *= np.float32(0.02)
                elif kind == "ones":
                    x = np.ones(sub, dtype=np.float32)
                else:
                    x = np.zeros(sub, dtype=np.float32)
                f.write(to_bf16(x).tobytes() if dtype == "BF16" else
                        x.astype("<f4", copy=False).tobytes())
    os.replace(tmp, path)  # never leave a half-written checkpoint under the final name
    return off


def write_checkpoint(out, tensors, a):
    """One model.safetensors, or shards of at most a.shard_gb GB and their index."""
    esize = 2 if a.dtype == "BF16" else 4
    rng = np.random.default_rng(a.seed)
    if not a.shard_gb:
        return write_safetensors(os.path.join(out, "model.safetensors"), tensors, rng, a.dtype,
                                 a.seed)
    limit, shards, cur, size = int(a.shard_gb * 1e9), [], [], 0
    for t in tensors:
        n = int(np.prod(t[1])) * esize
        if cur and size + n > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += n
    shards.append(cur)
    total, weight_map = 0, {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(os.path.join(out, fname), part, rng, a.dtype, a.seed)
        weight_map.update({name: fname for name, _, _ in part})
        print(f"{out}/{fname}: {len(part)} tensors", file=sys.stderr)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="checkpoint directory to create")
    ap.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=None, help="llama only (default: --heads)")
    ap.add_argument("--ff", type=int, default=None, help="MLP width (default 4*d)")
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["F32", "BF16"], default="F32")
    ap.add_argument("--shard-gb", type=float, default=0,
                    help="write shards of at most this many GB and an index (0: one file)")
    ap.add_argument("--rope-scaling", choices=["none", "llama3"], default="none")
    ap.add_argument("--preset", choices=["llama3-8b"], default=None,
                    help="llama3-8b: Llama-3-8B's shape in BF16, 5 GB shards")
    a = ap.parse_args()
    if a.preset == "llama3-8b":
        a.arch, a.d, a.layers, a.heads, a.kv_heads, a.ff = "llama", 4096, 32, 32, 8, 14336
        a.vocab, a.positions, a.dtype, a.rope_scaling = 128256, 131072, "BF16", "llama3"
        a.shard_gb = a.shard_gb or 5.0
    if a.kv_heads is None:
        a.kv_heads = a.heads
    if a.d % a.heads or a.heads % a.kv_heads:
        sys.exit("error: --d must be a multiple of --heads, and --heads of --kv-heads")
    if a.arch == "gpt2" and a.kv_heads != a.heads:
        sys.exit("error: --kv-heads applies to --arch llama only")
    if a.arch == "llama" and (a.d // a.heads) % 2:
        sys.exit("error: llama head dim (d / heads) must be even for rotary embeddings")

    tensors, cfg = (gpt2_tensors(a), gpt2_config(a)) if a.arch == "gpt2" else \
        (llama_tensors(a), llama_config(a))
    os.makedirs(a.out, exist_ok=True)
    cfg["torch_dtype"] = "bfloat16" if a.dtype == "BF16" else "float32"
    nbytes = write_checkpoint(a.out, tensors, a)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    n_params = nbytes // (2 if a.dtype == "BF16" else 4)
    print(f"{a.out}: {a.arch}, {len(tensors)} tensors, {n_params / 1e6:.1f}M parameters",
          file=sys.stderr)


if __name__ == "__main__":
    main()
