#!/usr/bin/env bash
# The harvest job in bfloat16 (docs/benchmarks.md, "bfloat16 checkpoints"): bench/run.sh's harvest
# (512 prompts of 8-256 tokens in no particular order, layers_output 0-5 stored in bfloat16) on
# the GPT-2-small shape written as a BF16 checkpoint, nnterp `--compute bfloat16` against PyTorch
# with the model in torch.bfloat16, batches of 8 left-padded with an attention mask, forward hooks,
# the pass stopped after the last collected block and h5py writes (bench/torch_harvest.py
# --dtype bfloat16), under Debian's torch 1.13 and a venv's torch 2.x. One pinned core, one thread
# everywhere; each side runs REPS times alternating and the fastest run of each is reported (whole
# runs: load, tokenization for nnterp, passes, writes). Also nnterp --compute float32 on the same
# checkpoint, and the stores' agreement (bfloat16 vs float32 compute, PyTorch bf16 vs nnterp).
# Usage: bench/harvest_bf16.sh [REPS]   (BENCH_CPU: the pinned core, default 0; VENV_PY)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-2}
CPU=${BENCH_CPU:-0}
BUILD=${BENCH_BUILD_DIR:-bench/.cache/build}
VENV_PY=${VENV_PY:-/work/venv/bin/python}
TOK=${NNTERP_SHARED:-../shared}/tokenizers/gpt2
CK=bench/.cache/gpt2-small-bf16
[ -f "$TOK/tokenizer.json" ] || { echo "bench/harvest_bf16.sh: needs the GPT-2 tokenizer at $TOK" >&2; exit 1; }
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target nnterp -j 2 >/dev/null
[ -f "$CK/model.safetensors" ] || /usr/bin/python3 tools/make_random_checkpoint.py --out "$CK" \
  --d 768 --layers 12 --heads 12 --vocab 50257 --positions 1024 --dtype BF16 --seed 0
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
pin="taskset -c $CPU"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 bench/harvest_prompts.py "$T/prompts.txt"
for c in bfloat16 float32; do
  cat >"$T/job-$c.json" <<JOB
{"model": "$PWD/$CK", "tokenizer": "$TOK/tokenizer.json",
 "dataset": {"path": "$T/prompts.txt", "max_tokens": 256, "too_long": "truncate"},
 "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": "0:6"}],
 "dtype": "bfloat16", "compute": "$c", "batch_tokens": 2048, "output": "$T/nn-$c.h5"}
JOB
done
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'; }
for r in $(seq "$REPS"); do
  for c in bfloat16 float32; do
    rm -f "$T"/nn-$c.h5*
    echo "nn-$c $(secs $pin "$BUILD/nnterp" run "$T/job-$c.json")" >>"$T/times"
  done
  [ -f "$T/ids.npz" ] || /usr/bin/python3 - "$T/nn-bfloat16.h5" "$T/ids.npz" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
np.savez(sys.argv[2], ids=f["tokens/ids"][:], offsets=f["prompts/token_offsets"][:])
PY
  $pin /usr/bin/python3 bench/torch_harvest.py "$CK" "$T/ids.npz" "$T/pt1.h5" --dtype bfloat16 >>"$T/pt1.jsonl"
  if [ -x "$VENV_PY" ]; then
    $pin "$VENV_PY" bench/torch_harvest.py "$CK" "$T/ids.npz" "$T/pt2.h5" --dtype bfloat16 >>"$T/pt2.jsonl"
  fi
done
/usr/bin/python3 - "$T" "$("$BUILD/nnterp" inspect -m "$CK" | grep -- '--compute bfloat16:' | sed 's/.*bfloat16: //')" <<'PY'
import json, os, sys
import h5py, numpy as np
t, kernel = sys.argv[1:]
times = {}
for line in open(f"{t}/times"):
    k, v = line.split()
    times.setdefault(k, []).append(float(v))
pt = {}
for k in ("pt1", "pt2"):
    if os.path.exists(f"{t}/{k}.jsonl"):
        runs = [json.loads(l) for l in open(f"{t}/{k}.jsonl")]
        pt[k] = (min(r["seconds"] for r in runs), runs[0]["torch"])
nb, nf = min(times["nn-bfloat16"]), min(times["nn-float32"])
N = int(h5py.File(f"{t}/nn-bfloat16.h5")["prompts/token_offsets"][-1])
def bf(a):
    return (a.astype(np.uint32) << 16).view(np.float32)
a, b = h5py.File(f"{t}/nn-bfloat16.h5"), h5py.File(f"{t}/nn-float32.h5")
rel = max(float(np.abs(bf(a[f"activations/layers_output/{l}"][:].view(np.uint16)) - bf(b[f"activations/layers_output/{l}"][:].view(np.uint16))).max() /
          np.sqrt((bf(b[f"activations/layers_output/{l}"][:].view(np.uint16)) ** 2).mean())) for l in range(6))
print(f"CPU: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}; kernel: {kernel}")
print(f"512 prompts, {N} tokens, layers_output 0-5 stored in bfloat16; fastest of {len(times['nn-bfloat16'])} runs each, one pinned core")
print()
print("| run | seconds | tokens/s | nnterp bfloat16 against it |")
print("|---|---:|---:|---:|")
print(f"| nnterp --compute bfloat16 | {nb:.2f} | {N / nb:.0f} | |")
print(f"| nnterp --compute float32 | {nf:.2f} | {N / nf:.0f} | {nf / nb:.2f}x |")
for k, (s, v) in pt.items():
    print(f"| PyTorch {v} bfloat16 + h5py | {s:.2f} | {N / s:.0f} | {s / nb:.2f}x |")
print()
print(f"bfloat16 vs float32 compute, worst |difference| / rms over layers 0-5: {rel:.2e}")
PY
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
