#!/usr/bin/env python3
"""The PyTorch side of the harvest benchmark (bench/run.sh): collecting `layers_output` of the
first layers of a whole dataset in bfloat16 the way it is done today with nnsight/nnterp —
batches of 8 prompts in dataset order, left-padded with an attention mask, a forward hook on each
collected block that copies the real tokens' rows, the pass stopped after the last collected
block (nnsight's `.stop()`), and the rows written with h5py at each prompt's token offset.

The model is bench/torch_forward.py's (transformers' eager GPT-2/Llama code op for op). The
prompts are given as token ids (IDS.npz: `ids` int32 [N], `offsets` int64 [P + 1]), the ones
nnterp tokenized, so both sides process the same tokens.

Usage: /usr/bin/python3 bench/torch_harvest.py MODEL_DIR IDS.npz OUT.h5 [--batch 8]
           [--layers 6] [--threads 1] [--dtype float32|bfloat16]
--dtype bfloat16 runs the model in torch.bfloat16 (as torch_dtype=torch.bfloat16 does; the
harvest of bench/harvest_bf16.sh).
Prints one JSON object: seconds (the whole run: load, passes, writes), tokens, tokens_per_s.
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_forward import GPT2LMHeadModel, LlamaForCausalLM, load_safetensors  # noqa: E402


class Stop(Exception):
    """Raised by the last collected block's hook: the rest of the model is not run."""


def main():
    ap = argparse.ArgumentParser(description="PyTorch harvest benchmark")
    ap.add_argument("model_dir")
    ap.add_argument("ids")
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "gpt2":
        sys.exit("torch_harvest.py: only GPT-2 checkpoints take an attention mask here")
    model = GPT2LMHeadModel(cfg)
    model.load(load_safetensors(os.path.join(a.model_dir, "model.safetensors")))
    model.eval()
    if a.dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    z = np.load(a.ids)
    ids, offsets = z["ids"], z["offsets"]
    P, N, d = len(offsets) - 1, int(offsets[-1]), cfg["n_embd"]

    out = h5py.File(a.out, "w")
    # bfloat16 has no numpy type: the upper 16 bits of each float32, stored as uint16
    sets = [out.create_dataset(f"layers_output/{l}", (N, d), dtype=np.uint16)
            for l in range(a.layers)]
    batch_rows = {}  # layer -> [B, T, d] tensor of the current batch

    def make_hook(layer):
        def hook(module, inputs, output):
            batch_rows[layer] = (output[0] if isinstance(output, tuple) else output).detach()
            if layer == a.layers - 1:
                raise Stop
        return hook

    handles = [model.blocks[l].register_forward_hook(make_hook(l)) for l in range(a.layers)]
    with torch.no_grad():
        for p0 in range(0, P, a.batch):
            p1 = min(P, p0 + a.batch)
            lens = [int(offsets[p + 1] - offsets[p]) for p in range(p0, p1)]
            T = max(lens)
            batch = torch.zeros((p1 - p0, T), dtype=torch.long)
            mask = torch.zeros((p1 - p0, T), dtype=torch.long)
            for i, p in enumerate(range(p0, p1)):
                batch[i, T - lens[i]:] = torch.from_numpy(ids[offsets[p]:offsets[p + 1]].astype(np.int64))
                mask[i, T - lens[i]:] = 1
            try:
                model(batch, attention_mask=mask)
            except Stop:
                pass
            for l in range(a.layers):
                bits = batch_rows[l].to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                for i, p in enumerate(range(p0, p1)):
                    sets[l][offsets[p]:offsets[p + 1]] = bits[i, T - lens[i]:]
    for h in handles:
        h.remove()
    out.close()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "seconds": dt, "tokens": N,
                      "prompts": P, "tokens_per_s": N / dt, "threads": a.threads,
                      "dtype": a.dtype}))


if __name__ == "__main__":
    main()
