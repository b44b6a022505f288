#!/usr/bin/env python3
"""nnterp (this project, through its `nnterp` CLI) side by side with the Python library nnterp
(`StandardizedTransformer` on nnsight), function by function, on the same checkpoints and prompts.
Writes a JSON of the differences; docs/nnterp-parity.md reports them.

Run by hand from its own venv (the Python nnterp pins an nnsight that the shared venv lacks):
    python3 -m venv /work/venv-nnterp
    /work/venv-nnterp/bin/pip install torch==2.13.0        # the CPU build already on disk
    /work/venv-nnterp/bin/pip install nnterp==1.3.0 "nnsight>=0.6,<0.7" h5py
    /work/venv-nnterp/bin/python tools/nnterp_parity.py --nnterp build/nnterp [--harvest]

--padding measures the Python library's left padding on an absolute-position model (GPT-2-small,
random weights, bench/.cache/gpt2-small-random, which bench/run.sh writes). --harvest also times the Python library's collect_token_activations_batched against
`nnterp run` on bench/run.sh's harvest dataset (GPT-2-small, random weights,
bench/.cache/gpt2-small-random; 512 prompts of 8-256 tokens, layers_output 0-5), one run each,
one pinned core.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch

torch.set_grad_enabled(False)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from nnterp import StandardizedTransformer  # noqa: E402
from nnterp.interventions import TargetPrompt, logit_lens, patchscope_lens, repeat_prompt  # noqa: E402
from nnterp.prompt_utils import Prompt, get_first_tokens, run_prompts  # noqa: E402

CPU = int(os.environ.get("BENCH_CPU", "0"))  # the core both sides of the harvest run on
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "demo": (os.path.join(ROOT, "models", "demo"),
             ["The capital of France is", "The dog says", "Two plus two is four. Three plus three is"],
             {"paris": ["Paris"], "london": ["London"]}),
    "stories260K": (os.path.join(ROOT, "..", "shared", "models", "stories260K", "hf"),
                    ["Once upon a time", "Lily saw a big", "The little dog was very"],
                    {"dog": ["dog"], "cat": ["cat"]}),
}
HOOKS = ["layers_input", "attention_probabilities", "attentions_output", "mlps_output",
         "layers_output"]


def cli(args, nnterp):
    r = subprocess.run([nnterp] + args, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"nnterp {' '.join(args)}: {r.stderr}")
    return r.stdout


def maxdiff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max()) if a.size else 0.0


def update(res, key, value):
    """Keeps the largest difference of a function over prompts."""
    if isinstance(value, str) or isinstance(res.get(key), str):
        res[key] = value if isinstance(value, str) else res[key]
    else:
        res[key] = max(res.get(key, 0.0), value)


def parse_table(text):
    """A lens/patchscope/steer table of the CLI: layer -> [(token repr, prob)...]."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s*layer\s+(\d+)\s+(.*)$", line)
        if m:
            cells = re.findall(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s+([0-9.]+)", m.group(2))
            rows[int(m.group(1))] = [(c, float(p)) for c, p in cells]
    return rows


def compare_model(name, path, prompts, targets, nnterp, tmp):
    res, notes = {}, []
    # enable_attention_probs makes nnterp load the model with eager attention
    m = StandardizedTransformer(path, enable_attention_probs=True, dtype=torch.float32)
    tok = m.tokenizer
    L = m.num_layers
    # --- trace: every hook point, one prompt at a time (no padding on either side)
    for p in prompts:
        saved = {h: [] for h in HOOKS}
        with m.trace(p):  # nnsight wants the hook points in the order the forward reaches them
            for i in range(L):
                for h in HOOKS:
                    saved[h].append(getattr(m, h)[i].save())
            logits = m.logits.save()
            ntp = m.next_token_probs.save()
        ids = tok(p)["input_ids"]
        out = os.path.join(tmp, "t.h5")
        cli(["trace", "-m", path, "--ids", " ".join(map(str, ids)), "--save",
             ",".join(HOOKS + ["logits", "next_token_probs"]), "-o", out], nnterp)
        with h5py.File(out) as f:
            for h in HOOKS:
                for i in range(L):
                    ours = (f[f"activations/{h}/{i}/0"][:] if h == "attention_probabilities"
                            else f[f"activations/{h}/{i}"][:])
                    theirs = saved[h][i]
                    theirs = theirs[0] if isinstance(theirs, torch.Tensor) else theirs
                    update(res, h, maxdiff(ours, theirs.detach().float().numpy()))
            update(res, "logits", maxdiff(f["activations/logits"][:], logits[0].detach().float().numpy()))
            update(res, "next_token_probs", maxdiff(f["activations/next_token_probs"][0],
                                                     ntp[0].detach().float().numpy()))
    # the same prompts as one batch: Python nnterp pads (left), the C side packs without padding
    batched = []
    with m.trace(prompts):
        for i in range(L):
            batched.append(m.layers_output[i].save())
    lens = [len(tok(p)["input_ids"]) for p in prompts]
    args = ["trace", "-m", path, "--save", "layers_output", "-o", os.path.join(tmp, "b.h5")]
    for p in prompts:
        args += ["--ids", " ".join(map(str, tok(p)["input_ids"]))]
    cli(args, nnterp)
    with h5py.File(os.path.join(tmp, "b.h5")) as f:
        offs = f["prompts/token_offsets"][:]
        worst = 0.0
        for i in range(L):
            x = f[f"activations/layers_output/{i}"][:]
            for j, n in enumerate(lens):
                theirs = batched[i][j, batched[i].shape[1] - n:] if tok.padding_side == "left" \
                    else batched[i][j, :n]
                worst = max(worst, maxdiff(x[offs[j]:offs[j + 1]], theirs.detach().float().numpy()))
        res[f"layers_output, batch of {len(prompts)} ({tok.padding_side}-padded vs packed)"] = worst
    # --- logit lens (and the inverse lens, which the Python library does not have)
    for p in prompts:
        probs = logit_lens(m, [p])[0]  # [layers, vocab] at the last token
        out = os.path.join(tmp, "l.h5")
        cli(["lens", "-m", path, "--ids", " ".join(map(str, tok(p)["input_ids"])), "-k", "10",
             "-o", out], nnterp)
        with h5py.File(out) as f:
            ids_, pr = f["lens/top_ids"][:, 0], f["lens/top_probs"][:, 0]
            layers = f["lens/layers"][:]
            theirs = np.stack([probs[layer].numpy()[ids_[k]] for k, layer in enumerate(layers)])
            update(res, "logit_lens (top 10 of every layer)", maxdiff(pr, theirs))
    # --- patchscope lens: nnterp's repeat_prompt() target, and a TargetPrompt of our own
    target = TargetPrompt("cat -> cat\n1135 -> 1135\nhello -> hello\n?", -1)
    for label, tp, extra in [("patchscope_lens, repeat_prompt()", repeat_prompt(), []),
                             ("patchscope_lens, TargetPrompt", target,
                              ["--target", target.prompt, "--index", "-1"])]:
        for p in prompts:
            probs = patchscope_lens(m, source_prompts=[p], target_patch_prompts=tp)[0]
            rows = parse_table(cli(["patchscope", "-m", path, "--source", p, "-k", "3"] + extra,
                                   nnterp))
            worst = 0.0
            for layer, cells in rows.items():
                top = torch.topk(probs[layer], 3)
                for (tok_repr, pr), i_ in zip(cells, top.indices.tolist()):
                    worst = max(worst, abs(pr - probs[layer][i_].item()))
                    if repr(tok.decode([i_])) != tok_repr and abs(pr - top.values[0].item()) > 2e-3:
                        notes.append(f"{name} {label} '{p}' layer {layer}: token {tok_repr} vs "
                                     f"{tok.decode([i_])!r}")
            update(res, label + " (top 3, printed to 3 decimals)", worst)
    # --- run_prompts with Prompt.from_strings / get_first_tokens against `nnterp probs`
    plist = [Prompt.from_strings(p, targets, tok) for p in prompts]
    py = run_prompts(m, plist, batch_size=1)
    jl = os.path.join(tmp, "p.jsonl")
    with open(jl, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p, "targets": targets}) + "\n")
    ours = [json.loads(x) for x in cli(["probs", "-m", path, "-f", jl], nnterp).splitlines()]
    worst, same_tokens = 0.0, True
    for k, o in enumerate(ours):
        for t, words in targets.items():
            worst = max(worst, abs(o["probs"][t] - float(py[t][k])))
            same_tokens &= sorted(o["tokens"][t]) == sorted(get_first_tokens(words, tok))
    res["run_prompts (Prompt.from_strings)"] = worst
    res["get_first_tokens (same ids)"] = "yes" if same_tokens else "no"
    # --- steering: a random direction at layer 1, next-token distribution after it
    rng = np.random.default_rng(0)
    vec = rng.standard_normal(m.hidden_size).astype(np.float32)
    np.save(os.path.join(tmp, "v.npy"), vec)
    for p in prompts:
        with m.trace(p):
            m.steer(layers=[1], steering_vector=torch.from_numpy(vec), factor=2.0)
            sp = m.next_token_probs.save()
        text = cli(["steer", "-m", path, "-p", p, "--vector", os.path.join(tmp, "v.npy"),
                    "--layers", "1", "--factor", "2", "-n", "0", "-k", "3"], nnterp)
        steered = [ln for ln in text.splitlines() if "steer" in ln.lower()]
        nums = [float(x) for x in re.findall(r"\s([0-9]\.[0-9]{3})", steered[-1] if steered else "")]
        top = torch.topk(sp[0], 3).values.tolist()
        if nums:
            update(res, "steer (next-token top 3, 3 decimals)",
                   max(abs(a - b) for a, b in zip(nums, top)))
        else:
            res["steer (next-token top 3, 3 decimals)"] = "unparsed: " + text[:80]
    return res, notes


def padding_on_absolute_positions():
    """Python nnterp's left padding on GPT-2 (absolute positions): a short prompt batched with a
    longer one against the same prompt alone, at layers_output[3]."""
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(os.path.join(ROOT, "..", "shared", "tokenizers", "gpt2"))
    tk.pad_token, tk.padding_side = tk.eos_token, "left"  # GPT-2 has none; nnterp pads left
    m = StandardizedTransformer(os.path.join(ROOT, "bench", ".cache", "gpt2-small-random"),
                                tokenizer=tk, dtype=torch.float32)
    ps = ["the cat sat on the mat and then", "hello"]
    out, alone = [], []
    with m.trace(ps):
        out.append(m.layers_output[3].save())
    for p in ps:
        with m.trace(p):
            alone.append(m.layers_output[3].save())
    b = out[0]
    return {p: float((b[j, b.shape[1] - alone[j].shape[1]:] - alone[j][0]).abs().max())
            for j, p in enumerate(ps)}


def harvest(nnterp, tmp, every):
    """collect_token_activations_batched vs `nnterp run`, bench/run.sh's harvest dataset."""
    from nnterp.nnsight_utils import collect_token_activations_batched
    gpt2 = os.path.join(ROOT, "bench", ".cache", "gpt2-small-random")
    tokdir = os.path.join(ROOT, "..", "shared", "tokenizers", "gpt2")
    import random
    random.seed(1)
    words = ("the of and a to in is was that for on with as by at from his her it an were are "
             "which this be had not but have one they you all we can there been if more when will "
             "would who so no time people year way day man thing woman life child world school "
             "state family").split()
    lengths = [8 + (i * 248) // 511 for i in range(512)]
    random.shuffle(lengths)
    prompts = [" ".join(random.choice(words) for _ in range(n)) for n in lengths]
    prompts = prompts[::every]  # every: 1 for the whole dataset, 8 for a 64-prompt sample of it
    with open(os.path.join(tmp, "prompts.txt"), "w") as f:
        f.write("\n".join(prompts) + "\n")
    job = {"model": gpt2, "tokenizer": os.path.join(tokdir, "tokenizer.json"),
           "dataset": {"path": os.path.join(tmp, "prompts.txt"), "max_tokens": 256,
                       "too_long": "truncate"},
           "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": "0:6"}],
           "dtype": "bfloat16", "batch_tokens": 2048, "output": os.path.join(tmp, "h.h5")}
    with open(os.path.join(tmp, "job.json"), "w") as f:
        json.dump(job, f)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    import resource
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["taskset", "-c", str(CPU), nnterp, "run", os.path.join(tmp, "job.json")], check=True,
                   env=env, capture_output=True)
    t_c = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_c = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {CPU})
    t0, p0 = time.perf_counter(), time.process_time()
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(tokdir)
    tk.pad_token, tk.padding_side = tk.eos_token, "left"  # GPT-2 has none; nnterp pads left
    m = StandardizedTransformer(gpt2, tokenizer=tk, dtype=torch.float32)
    acts = collect_token_activations_batched(m, prompts, batch_size=8, layers=list(range(6)),
                                             idx=None)
    t_py, cpu_py = time.perf_counter() - t0, time.process_time() - p0
    return {"prompts": len(prompts), "tokens": int(sum(len(tk(p)["input_ids"]) for p in prompts)),
            "nnterp_run_s": t_c, "python_nnterp_s": t_py, "ratio_wall": t_py / t_c,
            "nnterp_run_cpu_s": cpu_c, "python_nnterp_cpu_s": cpu_py, "ratio_cpu": cpu_py / cpu_c,
            "python_shape": list(acts.shape), "cpu": CPU}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nnterp", default=os.path.join(ROOT, "build", "nnterp"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--harvest", action="store_true")
    ap.add_argument("--padding", action="store_true",
                    help="left padding on GPT-2-small (bench/.cache/gpt2-small-random)")
    ap.add_argument("--harvest-every", type=int, default=1,
                    help="take every k-th prompt of the harvest dataset (a busy machine: 8)")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    report = {"versions": {}, "models": {}, "notes": []}
    import nnsight
    import nnterp as py_nnterp
    import transformers
    report["versions"] = {"nnterp (Python)": getattr(py_nnterp, "__version__", "1.3.0"),
                          "nnsight": nnsight.__version__, "transformers": transformers.__version__,
                          "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, a.models.split(",")):
            path, prompts, targets = MODELS[name]
            res, notes = compare_model(name, path, prompts, targets, a.nnterp, tmp)
            report["models"][name] = res
            report["notes"] += notes
            print(name, json.dumps(res, indent=1), file=sys.stderr)
        if a.padding:
            report["gpt2 left padding: batched vs alone"] = padding_on_absolute_positions()
            print(report["gpt2 left padding: batched vs alone"], file=sys.stderr)
        if a.harvest:
            h = harvest(a.nnterp, tmp, a.harvest_every)
            cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
            h.update(report["versions"], date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     cpu_model=re.search(r"Model name:\s*(.*)", cpu).group(1),
                     isa=[f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags],
                     load_average=open("/proc/loadavg").read().split()[:3])
            report["harvest"] = h
            # docs/benchmarks.md (bench/report.py) reports it
            with open(os.path.join(ROOT, "bench", "python-nnterp-harvest.json"), "w") as f:
                json.dump(h, f, indent=1)
                f.write("\n")
            print(h, file=sys.stderr)
    text = json.dumps(report, indent=1)
    if a.out == "-":
        print(text)
    else:
        open(a.out, "w").write(text + "\n")


if __name__ == "__main__":
    main()
