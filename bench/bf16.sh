#!/usr/bin/env bash
# bfloat16 compute figures, measured side by side in one run and printed as a markdown table
# (docs/benchmarks.md, "bfloat16 checkpoints"):
#   GPT-2-small and the Llama shape of bench/run.sh written as BF16 checkpoints; one pinned core;
#   8 prompts x 128 tokens, every layers_output captured; nnterp --compute float32, bfloat16 and
#   bfloat16x3 against PyTorch with bfloat16 weights (the same hooked forward, bench/
#   torch_forward.py --dtype bfloat16) under Debian's torch 1.13 and /work/venv's torch 2.13; and
#   the fraction of the bfloat16 kernel's own rate: the seconds the kernel alone needs for the
#   forward's linear maps (oneDNN's matmul in one call with all 1024 rows on AMX, the vdpbf16ps
#   kernel in 128-row calls elsewhere; one thread) over nnterp's whole forward.
# Usage: bench/bf16.sh [REPS]   (BENCH_CPU: the pinned core, default 0; VENV_PY: torch 2.x python)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
CPU=${BENCH_CPU:-0}
BUILD=${BENCH_BUILD_DIR:-bench/.cache/build}
VENV_PY=${VENV_PY:-/work/venv/bin/python}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_forward nnterp -j 2 >/dev/null
mk() { # dir args...
  local dir=$1
  shift
  [ -f "$dir/model.safetensors" ] && [ "$dir/model.safetensors" -nt tools/make_random_checkpoint.py ] ||
    /usr/bin/python3 tools/make_random_checkpoint.py --out "$dir" "$@" --dtype BF16 --seed 0
}
mk bench/.cache/gpt2-small-bf16 --d 768 --layers 12 --heads 12 --vocab 50257 --positions 1024
mk bench/.cache/llama-small-bf16 --arch llama --d 768 --layers 12 --heads 12 --kv-heads 4 --ff 2048 \
  --vocab 32000 --positions 4096
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
pin="taskset -c $CPU"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
isa=$(grep -o -w -E 'avx512f|avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "CPU: $model; flags: $isa"
"$BUILD/nnterp" inspect -m bench/.cache/gpt2-small-bf16 | grep -- '--compute bfloat16' | sed 's/^ *//' 
echo
echo "| model | nnterp float32 | nnterp bfloat16 | nnterp bfloat16x3 | PyTorch 1.13 bf16 | PyTorch 2.13 bf16 | bf16 / f32 | bf16 / PyTorch 2.13 | x3 / f32 | of the kernel's own rate (bf16) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for m in gpt2 llama; do
  ck=bench/.cache/gpt2-small-bf16
  [ $m = llama ] && ck=bench/.cache/llama-small-bf16
  for c in float32 bfloat16 bfloat16x3; do
    lib=""
    [ $c = bfloat16 ] && lib=--library-rate
    $pin "$BUILD/bench_forward" "$ck" --batch 8 --tokens 128 --reps "$REPS" --threads 1 --only-last \
      --compute $c $lib >"$T/nn-$m-$c.json"
  done
  $pin /usr/bin/python3 bench/torch_forward.py "$ck" --reps "$REPS" --dtype bfloat16 >"$T/pt1-$m.json"
  if [ -x "$VENV_PY" ]; then
    $pin "$VENV_PY" bench/torch_forward.py "$ck" --reps "$REPS" --dtype bfloat16 >"$T/pt2-$m.json"
  else echo '{"tokens_per_s_median": 0}' >"$T/pt2-$m.json"; fi
  /usr/bin/python3 - "$T" "$m" <<'PY'
import json, sys
t, m = sys.argv[1:]
j = lambda n: json.load(open(f"{t}/{n}.json"))
f32, bf, x3 = (j(f"nn-{m}-{c}") for c in ("float32", "bfloat16", "bfloat16x3"))
p1, p2 = j(f"pt1-{m}"), j(f"pt2-{m}")
r = lambda d: d["tokens_per_s_median"]
sec = bf["modes"]["layers_output"]["seconds_median"]
frac = bf.get("library_linear_s", 0) / sec
ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
print(f"| {m} | {r(f32):.0f} tok/s | {r(bf):.0f} | {r(x3):.0f} | {r(p1):.0f} | {r(p2):.0f} | "
      f"{ratio(r(bf), r(f32))} | {ratio(r(bf), r(p2))} | {ratio(r(x3), r(f32))} | {frac:.0%} |")
PY
done
echo
echo "kernel: $(/usr/bin/python3 -c "import json; print(json.load(open('$T/nn-gpt2-bfloat16.json'))['compute_kernel'])")"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
