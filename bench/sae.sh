#!/usr/bin/env bash
# An SAE of 16k and of 65k features (SAELens TopK, k 64) on the GPT-2-small shape, at
# blocks.6.hook_resid_post, over 8 x 128 tokens on one pinned core: nnterp's forward, nnterp's
# encode + decode of every token (what the sae job operation computes), and SAELens's encode +
# decode of the same rows (torch, one thread). Prints one JSON line per measurement; the figures of
# docs/benchmarks.md ("Sparse autoencoders") come from it.
#
# Usage: bench/sae.sh   (needs the venv of tools/make_sae_fixtures.py: SAE_PY, default
# /work/venv-sae/bin/python, with sae-lens; the SAEs and the checkpoint go to bench/.cache)
set -euo pipefail
cd "$(dirname "$0")/.."
SAE_PY=${SAE_PY:-/work/venv-sae/bin/python}
BUILD=${BENCH_BUILD_DIR:-build}
CPU=${BENCH_CPU:-0}
REPS=${BENCH_REPS:-3}
GPT2=bench/.cache/gpt2-small-random
cmake --build "$BUILD" --target bench_sae -j2 >/dev/null
[ -f $GPT2/model.safetensors ] || /usr/bin/python3 tools/make_random_checkpoint.py --out $GPT2 \
  --d 768 --layers 12 --heads 12 --vocab 50257 --positions 1024 --seed 0
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
for n in 16384 65536; do
  dir=bench/.cache/sae-$((n / 1024))k
  [ -f $dir/sae_weights.safetensors ] || "$SAE_PY" bench/make_sae.py $dir $n
  taskset -c "$CPU" "$BUILD/bench_sae" $GPT2 $dir --reps "$REPS" --dump bench/.cache/x.f32
  taskset -c "$CPU" "$SAE_PY" bench/sae_torch.py $dir bench/.cache/x.f32 --reps "$REPS" 2>/dev/null | tail -1
done
