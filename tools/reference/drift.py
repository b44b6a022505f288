#!/usr/bin/env python3
"""Drift between ../shared/reference (transformers 4.47.1) and the installed transformers.

For every tiny model of ../shared/reference/tiny: (1) numbers — the same checkpoint and prompts run
through this transformers (eager, float32), compared at valid positions with the 4.47.1 dumps on
the tensors every family has as model outputs (layers_input.0 = hidden_states[0], layers_output.i =
hidden_states[i+1] for i < L-1, ln_final = hidden_states[L], attention_probabilities.i, logits);
(2) config handling — the checkpoint loaded and written again with save_pretrained, and the keys
and tensor names that changed. The re-saved checkpoints go to OUT/<arch>/model-v5, for the engine
to be run on them against the 4.47.1 references (see docs/reference-drift.md).

  /work/venv/bin/python tools/reference/drift.py [--shared ../shared] [--out /tmp/nnterp-drift]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def tensor_names(model_dir):
    names = set()
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            with open(os.path.join(model_dir, f), "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                names |= {k for k in json.loads(fh.read(n)) if k != "__metadata__"}
    return names


def compare(model, ref_dir, man):
    worst = {}
    L = man["num_layers"]
    for case in man["cases"]:
        ids = torch.tensor(case["input_ids"])
        mask = torch.tensor(case["attention_mask"])
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                        output_attentions=True, use_cache=False)
        ours = {"layers_input.0": out.hidden_states[0], "ln_final": out.hidden_states[L],
                "logits": out.logits}
        for i in range(L - 1):
            ours[f"layers_output.{i}"] = out.hidden_states[i + 1]
        for i, a in enumerate(out.attentions or []):
            if a is not None:
                ours[f"attention_probabilities.{i}"] = a
        for name, t in ours.items():
            meta = case["tensors"].get(name)
            if meta is None:
                continue
            ref = np.fromfile(os.path.join(ref_dir, meta["file"]), "<f4").reshape(meta["shape"])
            o = t.float().numpy()
            d = 0.0
            for b, n in enumerate(case["lengths"]):
                if name.startswith("attention_probabilities"):
                    d = max(d, float(np.abs(o[b, :, :n, :n] - ref[b, :, :n, :n]).max()))
                else:
                    d = max(d, float(np.abs(o[b, :n] - ref[b, :n]).max()))
            kind = ("probabilities" if name.startswith("attention") else
                    "logits" if name == "logits" else "activations")
            worst[kind] = max(worst.get(kind, 0.0), d)
    return worst


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "..", "shared"))
    ap.add_argument("--out", default="/tmp/nnterp-drift")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tiny = os.path.join(a.shared, "reference", "tiny")
    results = {}
    for arch in sorted(os.listdir(tiny)):
        src = os.path.join(tiny, arch, "model-f32")
        ref = os.path.join(tiny, arch, "ref-f32")
        with open(os.path.join(ref, "manifest.json")) as f:
            man = json.load(f)
        r = {}
        try:
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32,
                                                         attn_implementation="eager").eval()
            r["numbers"] = compare(model, ref, man)
            dst = os.path.join(a.out, arch, "model-v5")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            model.save_pretrained(dst)
            with open(os.path.join(src, "config.json")) as f:
                old = json.load(f)
            with open(os.path.join(dst, "config.json")) as f:
                new = json.load(f)
            skip = {"transformers_version", "torch_dtype", "dtype"}
            r["config_removed"] = sorted(k for k in old if k not in new and k not in skip)
            r["config_added"] = sorted(k for k in new if k not in old and k not in skip)
            r["config_changed"] = {k: [old[k], new[k]] for k in old
                                   if k in new and k not in skip and old[k] != new[k]}
            on, nn = tensor_names(src), tensor_names(dst)
            r["tensors_removed"] = sorted(on - nn)
            r["tensors_added"] = sorted(nn - on)
        except Exception as e:  # a family this transformers cannot load is drift too
            r["error"] = f"{type(e).__name__}: {e}"
        results[arch] = r
        print(arch, json.dumps(r)[:300], flush=True)
    results["_versions"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    with open(os.path.join(a.out, "drift.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
