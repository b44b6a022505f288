#!/usr/bin/env python3
"""The accuracy table of docs/engine.md: every family's reference dumps (../shared/reference) run
through build/test_reference with --compute bfloat16 (F32 checkpoints against the float32
references) and --compute bfloat16x3 (BF16 checkpoints against references computed in float32
from the same bfloat16 weights); per hook point, the worst max abs error over the cases, and that
error relative to the reference tensor's rms.

Usage: /usr/bin/python3 tools/bf16_accuracy.py [BUILD_DIR] [SHARED_DIR]  > table.md
"""
import re
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
shared = sys.argv[2] if len(sys.argv) > 2 else "../shared"
FAMILIES = ("gpt2 llama llama_gqa llama31_rope mistral mistral_swa8 qwen2 gemma gemma2 gpt_neox "
            "gptj opt phi phi3 stablelm olmo starcoder2 mixtral qwen2_moe gpt_bigcode falcon bloom "
            "cohere").split()
BF16 = "gpt2 llama_gqa qwen2 gemma2 mixtral".split()
COLS = ["layers_output", "attentions_output", "mlps_output", "logits", "attention_probabilities",
        "logit_lens"]


def run(ref, compute):
    out = subprocess.run([f"{build}/test_reference", ref, "--compute", compute, "--tol-act", "1e9",
                          "--tol-prob", "1e9"], capture_output=True, text=True).stdout
    worst, flips = {}, 0
    for line in out.splitlines():
        m = re.match(r"\s+\S+\s+(\S+)\s+max abs diff (\S+)(?: rel (\S+))?", line)
        if not m:
            continue
        point = m.group(1).split(".")[0]
        a, r = float(m.group(2)), float(m.group(3) or "nan")
        flips += "argmax flips" in line
        w = worst.setdefault(point, [0.0, 0.0])
        w[0], w[1] = max(w[0], a), max(w[1], r) if r == r else w[1]
    return worst, flips


def table(rows, compute, suffix):
    print(f"| {compute}: family | " + " | ".join(COLS) + " | argmax flips |")
    print("|---" * (len(COLS) + 2) + "|")
    for fam in rows:
        w, flips = run(f"{shared}/reference/tiny/{fam}/{suffix}", compute)
        cells = []
        for c in COLS:
            if c not in w:
                cells.append("-")
            elif c in ("attention_probabilities", "logit_lens"):
                cells.append(f"{w[c][0]:.1e}")
            else:
                cells.append(f"{w[c][0]:.1e} ({w[c][1]:.1e})")
        print(f"| {fam} | " + " | ".join(cells) + f" | {flips} |")
    print()


table(FAMILIES, "bfloat16", "ref-f32")
table(BF16, "bfloat16", "ref-bf16")
table(BF16, "bfloat16x3", "ref-bf16")
