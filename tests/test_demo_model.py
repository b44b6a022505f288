#!/usr/bin/python3
"""nnterp on the bundled demo model (models/demo) against the PyTorch model that trained it.

Usage: /usr/bin/python3 tests/test_demo_model.py NNTERP_BINARY REPO_ROOT

- the tokenizer: `nnterp tokenize --ids` equals tools/demo_model/bpe.py's encoder;
- `nnterp trace --save logits,layers_output,next_token_probs` on several prompts at once (a packed
  batch) equals tools/demo_model/model.py's forward pass, max abs diff <= 1e-4;
- `nnterp generate -p "The capital of France is" -n 3` continues with " Paris".
Exits 77 (skipped) when torch, numpy or h5py is missing.
"""
import os
import subprocess
import sys
import tempfile

TOL = 1e-4


def main():
    if len(sys.argv) != 3:
        print("usage: test_demo_model.py NNTERP_BINARY REPO_ROOT", file=sys.stderr)
        return 2
    nnterp, root = sys.argv[1], sys.argv[2]
    try:
        import h5py
        import numpy as np
        import torch
    except ImportError as e:
        print(f"SKIPPED: test_demo_model needs python3-torch, numpy and h5py ({e})")
        return 77
    torch.set_num_threads(1)
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, os.path.join(root, "tools", "demo_model"))
    import bpe
    from model import load_pretrained

    model_dir = os.path.join(root, "models", "demo")
    model = load_pretrained(model_dir)
    tok = bpe.Tokenizer.load(os.path.join(model_dir, "tokenizer.json"))
    fails = 0

    def check(name, ok, detail=""):
        nonlocal fails
        print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail else ""))
        fails += not ok

    prompts = ["The capital of France is",
               "La capitale de la Corée du Sud est",
               "Anna went to the farm. She saw 3 cows and 4 ducks. The cow said",
               "Q: What is 7 plus 5?\nA:",
               # long enough to use most of the 256-token context
               " ".join(f"The capital of {c} is {y}." for c, y in
                        [("Japan", "Tokyo"), ("Peru", "Lima"), ("Egypt", "Cairo"),
                         ("Norway", "Oslo"), ("Kenya", "Nairobi")] * 6) + " The capital of Cuba is"]
    ids = [tok.encode(p) for p in prompts]
    assert max(len(i) for i in ids) <= model.config.max_position_embeddings

    # tokenizer
    for p, i in zip(prompts, ids):
        r = subprocess.run([nnterp, "tokenize", "-m", model_dir, "--ids", "--", p],
                           capture_output=True, text=True)
        got = [int(x) for x in r.stdout.split()] if r.returncode == 0 else r.stderr.strip()
        check(f"tokenize {p[:40]!r}", got == i, "" if got == i else f"nnterp {got} python {i}")

    # trace vs PyTorch
    L = model.config.num_hidden_layers
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace.h5")
        cmd = [nnterp, "trace", "-m", model_dir, "--save",
               "logits,layers_output,next_token_probs", "-o", out]
        for i in ids:
            cmd += ["--ids", " ".join(map(str, i))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        check("trace runs", r.returncode == 0, r.stderr.strip())
        if r.returncode:
            return 1
        with h5py.File(out, "r") as f:
            offs = f["prompts/token_offsets"][:]
            logits = f["activations/logits"][:]
            probs = f["activations/next_token_probs"][:]
            layers = [f[f"activations/layers_output/{li}"][:] for li in range(L)]
        check("token_offsets", list(offs) == list(np.cumsum([0] + [len(i) for i in ids])),
              str(list(offs)))
        worst = {"logits": 0.0, "layers_output": 0.0, "next_token_probs": 0.0}
        with torch.no_grad():
            for k, i in enumerate(ids):
                ref, hidden = model(torch.tensor([i]), return_hidden=True)
                a, b = offs[k], offs[k + 1]
                worst["logits"] = max(worst["logits"],
                                      float(np.abs(ref[0].numpy() - logits[a:b]).max()))
                for li in range(L):
                    d = float(np.abs(hidden[li + 1][0].numpy() - layers[li][a:b]).max())
                    worst["layers_output"] = max(worst["layers_output"], d)
                p_ref = torch.softmax(ref[0, -1], -1).numpy()
                worst["next_token_probs"] = max(worst["next_token_probs"],
                                                float(np.abs(p_ref - probs[k]).max()))
        for name, w in worst.items():
            check(f"{name} vs PyTorch (max abs diff {w:.2e}, tolerance {TOL:g})", w <= TOL)

    # greedy generation through the CLI: the continuation only
    r = subprocess.run([nnterp, "generate", "-m", model_dir, "-p", "The capital of France is",
                        "-n", "3"], capture_output=True, text=True)
    check("generate 'The capital of France is' -> ' Paris'",
          r.returncode == 0 and r.stdout.startswith(" Paris"),
          f"got {r.stdout!r} {r.stderr.strip()}")
    print(f"{'FAILED' if fails else 'passed'}: {fails} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
