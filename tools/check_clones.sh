#!/usr/bin/env bash
# The loops between GEMMs are compiled three ways (NN_VECTOR_CLONES in engine/forward_*.c: baseline
# x86-64, x86-64-v3, x86-64-v4) and the loader picks one per CPU, so a store written on one node
# must not differ from a store written on another. This builds nnterp once per variant and traces
# every hook point of several model families with each: the stores must be bitwise identical.
# It compares single-variant builds (NN_VECTOR_ONLY) with each other; the product's binary holds
# all three and runs the one its CPU supports. About 20 s (three builds of nnterp).
#
# Usage: tools/check_clones.sh [C_COMPILER]   (default cc; NNTERP_SHARED: the shared test data,
#        default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${NNTERP_SHARED:-../shared}
PY=/usr/bin/python3
if [ ! -d "$S/reference/tiny" ] || [ ! -d "$S/models/stories260K" ]; then
  echo "SKIPPED: check_clones needs the shared test data (NNTERP_SHARED='$S')"; exit 77
fi
if ! "$PY" -c 'import h5py, numpy' 2>/dev/null; then
  echo "SKIPPED: check_clones needs python3-h5py and python3-numpy (tools/setup.sh installs them)"; exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

CC_USED=${1:-cc}
if [ "$(uname -m)" != x86_64 ] || "$CC_USED" --version 2>/dev/null | grep -qi clang ||
  [ "$("$CC_USED" -dumpversion 2>/dev/null | cut -d. -f1)" -lt 12 ] 2>/dev/null; then
  echo "SKIPPED: check_clones needs GCC 12 or later on x86-64 (the clones exist only there)"; exit 77
fi
# each variant only where this CPU can run it
variants=0
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && variants="$variants 3"
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && variants="$variants 4"
[ "$variants" = 0 ] && { echo "SKIPPED: this CPU runs only the baseline variant"; exit 77; }
models="reference/tiny/gpt2/model-f32 reference/tiny/llama_gqa/model-f32 reference/tiny/gemma2/model-f32
reference/tiny/gpt_neox/model-f32 reference/tiny/mixtral/model-f32 models/stories260K/hf"
hooks=layers_input,attentions_output,mlps_input,mlps_output,layers_output,ln_final,logits
for v in $variants; do
  echo "== building with NN_VECTOR_ONLY=$v" >&2
  cmake -S . -B "$T/build-$v" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC_USED" \
    -DCMAKE_C_FLAGS="-DNN_VECTOR_ONLY=$v" >/dev/null
  cmake --build "$T/build-$v" --target nnterp -j "$(nproc)" >/dev/null
  for m in $models; do
    [ -e "$S/$m" ] || { echo "check_clones: $S/$m missing" >&2; exit 1; }
    # two prompts of token ids below every model's vocabulary (301), 56 and 9 tokens long
    "$T/build-$v/nnterp" trace -m "$S/$m" --ids "$(seq -s ' ' 3 5 280)" --ids "1 17 200 5 5 64 99 3 250" \
      --save "$hooks" -o "$T/$v-${m//\//_}.h5" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; exit 1; }
  done
done
status=0
for v in $variants; do
  [ "$v" = 0 ] && continue
  for m in $models; do
    if "$PY" - "$T/0-${m//\//_}.h5" "$T/$v-${m//\//_}.h5" <<'PY'; then
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = [0]
def check(name, obj):
    if isinstance(obj, h5py.Dataset):
        assert np.array_equal(obj[:], b[name][:]), name
        n[0] += 1
a.visititems(check)
assert n[0] > 5, n[0]
PY
      echo "clones: x86-64-v$v = baseline on $m"
    else
      echo "clones: x86-64-v$v DIFFERS from baseline on $m"
      status=1
    fi
  done
done
exit $status
