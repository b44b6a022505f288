#!/usr/bin/env bash
# nnterp's performance figures, each measured side by side with its reference in one run, written
# to docs/benchmarks.md:
#   1. prefill efficiency: forward of 8 x 128 tokens against OpenBLAS sgemm measured in the same
#      run, on one pinned core, and two cores against one;
#   2. the forward with every layers_output captured against PyTorch (same model, same prompts,
#      one thread), for a GPT-2-small and a Llama-shaped model (d 768, 12 layers, GQA 12/4,
#      SwiGLU 2048, vocab 32000);
#   3. the harvest job (512 prompts of 8-256 tokens, layers_output 0-5 in bfloat16 to a store)
#      against PyTorch with left-padded batches of 8, hooks, a stop after layer 5 and h5py;
#   4. long prompts (512-4096 tokens) on one core: time per token and peak memory against T;
#   5. start-up on the 500 MB checkpoint: `nnterp inspect` and the load of a forward;
#   6. peak memory of the harvest job against weights + activations of one batch.
# Random-weight checkpoints are written once to bench/.cache (gitignored) by
# tools/make_random_checkpoint.py. Takes about 10 minutes.
#
# Usage: bench/run.sh
# Environment (optional): BENCH_BUILD_DIR (default bench/.cache/build, kept apart from build/),
# BENCH_REPS (5), BENCH_HARVEST_REPS (2, runs of each side of the harvest figure), BENCH_CPU (0, the core single-core runs are pinned to).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD_DIR:-bench/.cache/build}
REPS=${BENCH_REPS:-5}
HARVEST_REPS=${BENCH_HARVEST_REPS:-2}
[ "$HARVEST_REPS" -ge 1 ] 2>/dev/null || { echo "bench/run.sh: BENCH_HARVEST_REPS must be 1 or more" >&2; exit 1; }
CPU=${BENCH_CPU:-0}
PY=/usr/bin/python3 # Debian's python with torch 1.13, numpy and h5py
GPT2=bench/.cache/gpt2-small-random
LLAMA=bench/.cache/llama-small-random
TOK=${NNTERP_SHARED:-../shared}/tokenizers/gpt2
OUT=docs/benchmarks.md

command -v taskset >/dev/null || { echo "bench/run.sh: taskset (util-linux) is required" >&2; exit 1; }
"$PY" -c "import torch, numpy, h5py" || { echo "bench/run.sh: $PY lacks torch, numpy or h5py (tools/setup.sh)" >&2; exit 1; }
[ -f "$TOK/tokenizer.json" ] || { echo "bench/run.sh: the harvest figure needs the GPT-2 tokenizer at $TOK" >&2; exit 1; }

echo "== building in $BUILD" >&2
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_forward nnterp -j "$(nproc)" >/dev/null

make_ckpt() { # dir, args...: remade only when missing or older than its generator
  local dir=$1
  shift
  if [ ! -f "$dir/model.safetensors" ] || [ tools/make_random_checkpoint.py -nt "$dir/model.safetensors" ]; then
    echo "== writing $dir" >&2
    "$PY" tools/make_random_checkpoint.py --out "$dir" "$@" --seed 0
  fi
}
make_ckpt "$GPT2" --d 768 --layers 12 --heads 12 --vocab 50257 --positions 1024
make_ckpt "$LLAMA" --arch llama --d 768 --layers 12 --heads 12 --kv-heads 4 --ff 2048 --vocab 32000 \
  --positions 4096

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# One thread everywhere unless a figure says otherwise: OpenBLAS (both sides link the same
# libopenblas) and torch's OpenMP.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
pin="taskset -c $CPU"
peak_kb() { # stdout-file command...: runs it, prints its peak RSS in kB
  local out=$1
  shift
  /usr/bin/time -f %M -o "$T/rss" "$@" >"$out"
  cat "$T/rss"
}

# 1 + 2: forward, both models, both sides; two cores for nnterp
for m in gpt2 llama; do
  ck=$GPT2
  [ $m = llama ] && ck=$LLAMA
  echo "== forward $m: nnterp, PyTorch (1 core), nnterp (2 cores)" >&2
  $pin "$BUILD/bench_forward" "$ck" --batch 8 --tokens 128 --reps "$REPS" --threads 1 --sgemm >"$T/nn-$m.json"
  $pin "$PY" bench/torch_forward.py "$ck" --batch 8 --tokens 128 --reps "$REPS" --threads 1 >"$T/pt-$m.json"
  OPENBLAS_NUM_THREADS=2 taskset -c 0,1 "$BUILD/bench_forward" "$ck" --batch 8 --tokens 128 \
    --reps "$REPS" --threads 2 --only-last --sgemm >"$T/nn2-$m.json"
done

# 4: long prompts on the Llama-shaped model (its context is 4096)
for len in 512 1024 2048 4096; do
  echo "== long prompt: $len tokens" >&2
  kb=$(peak_kb "$T/long-$len.json" $pin "$BUILD/bench_forward" "$LLAMA" --batch 1 --tokens $len --reps 3 \
    --threads 1 --only-last)
  echo "$kb" >"$T/long-$len.rss"
done

# 5: start-up on the GPT-2 checkpoint (497 MB), page cache warm
"$BUILD/nnterp" inspect -m "$GPT2" >/dev/null
start_inspect=$( { /usr/bin/time -f %e "$BUILD/nnterp" inspect -m "$GPT2" >/dev/null; } 2>&1 | tail -1)

# 3 + 6: the harvest job against PyTorch
"$PY" bench/harvest_prompts.py "$T/prompts.txt"
cat >"$T/job.json" <<JOB
{"model": "$PWD/$GPT2", "tokenizer": "$TOK/tokenizer.json",
 "dataset": {"path": "$T/prompts.txt", "max_tokens": 256, "too_long": "truncate"},
 "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": "0:6"}],
 "dtype": "bfloat16", "batch_tokens": 2048, "output": "$T/nnterp.h5"}
JOB
# Each side runs HARVEST_REPS times, alternating, and the report takes each side's fastest run:
# single runs of the PyTorch side varied by 15% on this virtual machine. The last nnterp store
# stays for the comparison of values.
for r in $(seq "$HARVEST_REPS"); do
  echo "== harvest $r/$HARVEST_REPS: nnterp run" >&2
  rm -f "$T"/nnterp.h5*
  t0=$(date +%s.%N)
  harvest_kb=$(peak_kb "$T/harvest.out" $pin "$BUILD/nnterp" run "$T/job.json")
  t1=$(date +%s.%N)
  echo "$t0 $t1 $harvest_kb" >>"$T/harvest.nn"
  [ -f "$T/ids.npz" ] || "$PY" - "$T/nnterp.h5" "$T/ids.npz" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
np.savez(sys.argv[2], ids=f["tokens/ids"][:], offsets=f["prompts/token_offsets"][:])
PY
  echo "== harvest $r/$HARVEST_REPS: PyTorch" >&2
  rm -f "$T/torch.h5"
  $pin "$PY" bench/torch_harvest.py "$GPT2" "$T/ids.npz" "$T/torch.h5" --batch 8 --layers 6 \
    >>"$T/harvest-pt.jsonl"
done

# Machine facts for the report.
export BENCH_CPU_MODEL BENCH_OPENBLAS BENCH_DATE BENCH_KERNEL BENCH_CC BENCH_NPROC BENCH_PIN \
  BENCH_START_INSPECT
BENCH_CPU_MODEL=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
BENCH_OPENBLAS=$(dpkg-query -W -f='${Package} ${Version}' libopenblas0-pthread 2>/dev/null ||
  dpkg-query -W -f='${Package} ${Version}' libopenblas0 2>/dev/null || echo unknown)
BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BENCH_KERNEL=$(uname -srm)
BENCH_CC=$(sed -n 's/^CMAKE_C_COMPILER:[^=]*=//p' "$BUILD/CMakeCache.txt" | head -n1)
BENCH_CC="$BENCH_CC ($("$BENCH_CC" -dumpfullversion 2>/dev/null || echo '?'))"
BENCH_NPROC=$(getconf _NPROCESSORS_ONLN)
BENCH_PIN=$pin
BENCH_START_INSPECT=$start_inspect
# bench/bf16.sh's section (from its marker to the end) is kept across the rewrite.
keep=$(sed -n '/^<!-- bench\/bf16.sh -->/,$p' "$OUT" 2>/dev/null || true)
"$PY" bench/report.py "$T" "$GPT2" "$LLAMA" "$OUT"
[ -z "$keep" ] || printf '\n%s\n' "$keep" >>"$OUT"
