#!/usr/bin/env bash
# The tokenizer benchmark: nnterp's encoder against the reference implementations a user would
# pick instead, from PyPI, on the same corpus, the same machine, in one run, each pinned to one core:
#   GPT-2:     nnterp vs Hugging Face tokenizers and tiktoken;
#   Llama 3.1: nnterp vs Hugging Face tokenizers and tiktoken (Llama 3's tokenizer is tiktoken's);
#   Llama 2:   nnterp vs SentencePiece and Hugging Face tokenizers.
# Run by hand: the references come from a venv with PyPI's tokenizers, tiktoken and sentencepiece
# (BENCH_VENV, default /work/venv). Builds bench_tokenizer, makes the corpus once (bench/.cache,
# gitignored), runs every side, checks on a sample of lines that nnterp's ids equal each
# reference's, and writes docs/benchmarks-tokenizer.md (bench/tokenizer_report.py).
#
# Usage: bench/tokenizer.sh
# Environment (optional): BENCH_VENV (/work/venv), BENCH_BUILD_DIR (default bench/.cache/build),
# BENCH_TOK_MB (corpus size in MB, 15), BENCH_TOK_REPS (timed passes of nnterp, 5),
# BENCH_TOK_REF_REPS (timed passes of each reference and mode, 3), BENCH_TOK_SAMPLE (every how many
# lines the id check takes one, 20), BENCH_CPU (0, the core taskset pins to).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD_DIR:-bench/.cache/build}
MB=${BENCH_TOK_MB:-15}
REPS=${BENCH_TOK_REPS:-5}
REF_REPS=${BENCH_TOK_REF_REPS:-3}
SAMPLE=${BENCH_TOK_SAMPLE:-20}
CPU=${BENCH_CPU:-0}
VENV=${BENCH_VENV:-/work/venv}
VPY=$VENV/bin/python # the references
PY=/usr/bin/python3  # the corpus and the report (standard library only)
TOK=../shared/tokenizers
CORPUS=bench/.cache/tokcorpus-${MB}mb-seed0.txt
OUT=docs/benchmarks-tokenizer.md
die() { echo "bench/tokenizer.sh: $*" >&2; exit 1; }

for f in gpt2/tokenizer.json llama2/tokenizer.json llama2/tokenizer.model \
  modern/llama3_1/tokenizer.json; do
  [ -f "$TOK/$f" ] || die "missing $TOK/$f: the shared tokenizer files are expected in" \
    "../shared/tokenizers beside the repository (shared/ of the project)"
done
command -v taskset >/dev/null || die "taskset (util-linux) is required"
"$VPY" -c "import tokenizers, tiktoken, sentencepiece" 2>/dev/null ||
  die "$VPY lacks tokenizers, tiktoken or sentencepiece: python3 -m venv $VENV &&" \
    "$VPY -m pip install tokenizers tiktoken sentencepiece (or set BENCH_VENV)"

started=$(date +%s)
BENCH_LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
echo "== building bench_tokenizer in $BUILD" >&2
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_tokenizer -j 2 >/dev/null
BENCH_CC=$(sed -n 's/^CMAKE_C_COMPILER:[^=]*=//p' "$BUILD/CMakeCache.txt" | head -n1)
BENCH_CC="$BENCH_CC ($("$BENCH_CC" -dumpfullversion 2>/dev/null || echo '?'))"

if [ ! -s "$CORPUS" ] || [ tools/make_corpus.py -nt "$CORPUS" ]; then
  echo "== writing $CORPUS" >&2
  "$PY" tools/make_corpus.py --out "$CORPUS" --mb "$MB" --seed 0 --shared ../shared
fi

# One thread everywhere: the engine links OpenBLAS (unused here), whose pool would share the core;
# the tokenizers library's batch encoder stays on one thread with TOKENIZERS_PARALLELISM=false.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pin=(taskset -c "$CPU")
dump=(--dump-every "$SAMPLE" --dump-ids)
run() { # NAME OUTPUT-JSON COMMAND...
  local name=$1 out=$2
  shift 2
  echo "== $name: ${pin[*]} $*" >&2
  "${pin[@]}" "$@" >"$out"
}
for t in gpt2 llama3_1 llama2; do
  dir=$TOK/$t
  [ "$t" = llama3_1 ] && dir=$TOK/modern/$t
  run "nnterp $t" "$tmp/nn_$t.json" "$BUILD/bench_tokenizer" "$dir" "$CORPUS" \
    --reps "$REPS" "${dump[@]}" "$tmp/nn_$t.ids"
  refs=(hf-tokenizers tiktoken)
  [ "$t" = llama2 ] && refs=(sentencepiece hf-tokenizers)
  for r in "${refs[@]}"; do
    run "$r $t" "$tmp/${r}_$t.json" "$VPY" bench/tokenizer_pypi.py "$r" "$dir" "$CORPUS" \
      --reps "$REF_REPS" "${dump[@]}" "$tmp/${r}_$t.ids"
  done
done

# Machine facts for the report.
export BENCH_CPU_MODEL BENCH_ISA BENCH_DATE BENCH_KERNEL BENCH_CC BENCH_NPROC BENCH_PIN \
  BENCH_ELAPSED BENCH_CORPUS BENCH_SAMPLE BENCH_TOK_MB BENCH_TOK_DIR BENCH_LOAD_START \
  BENCH_LOAD_END BENCH_VENV
BENCH_CPU_MODEL=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
BENCH_ISA=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
  grep -x -E 'avx2|avx512f|avx512_bf16|amx_bf16' | tr '\n' ' ')
BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BENCH_KERNEL=$(uname -srm)
BENCH_NPROC=$(getconf _NPROCESSORS_ONLN)
BENCH_PIN="${pin[*]}"
BENCH_ELAPSED=$(($(date +%s) - started))
BENCH_LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)
BENCH_CORPUS=$CORPUS
BENCH_SAMPLE=$SAMPLE
BENCH_TOK_MB=$MB
BENCH_TOK_DIR=$TOK
BENCH_VENV=$VENV

"$PY" bench/tokenizer_report.py "$tmp" "$OUT"
