#!/usr/bin/env bash
# Generated tokens/s, one prompt at a time (nn_generate_ctx per prompt, as jobs ran generation
# before) against batched (nn_generate_batch_ctx: one row per sequence per decode step), and the
# collect forward's prompt tokens/s as the ceiling; the two generation modes' tokens are compared.
# One thread, pinned. Figures go in docs/benchmarks.md ("Batched generation") by hand.
#
# Usage: bench/generate.sh [MODEL_DIR...]   (default: models/demo)
# A GPT-2-small-shaped random checkpoint for the second figure:
#   /usr/bin/python3 tools/make_random_checkpoint.py --out /tmp/gpt2-small --d 768 --layers 12 \
#     --heads 12 --vocab 50257 --positions 1024 --seed 0
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CPU=${CPU:-0}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_generate -j2 >/dev/null
grep -m1 'model name' /proc/cpuinfo >&2
grep -o -m1 -w -e avx512f -e avx512_bf16 -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' ' >&2
echo >&2
[ $# -gt 0 ] || set -- models/demo
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
for model in "$@"; do
  for prompts in 16 64; do
    taskset -c "$CPU" "$BUILD/bench_generate" "$model" --prompts "$prompts" --tokens 16 --new 32 \
      --reps 3
  done
done
