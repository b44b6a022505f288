#!/usr/bin/env bash
# Regenerates docs/reliability.md: fuzzing figures per target, the malformed-input and
# allocation-failure suites, and kill points of `nnterp run` with the bytes each resumed store
# differs from an uninterrupted one (must be 0).
#
#   tools/reliability_report.sh [FUZZ_SECONDS]
#
# FUZZ_SECONDS (default 150) runs tools/fuzz.sh that long per target, FUZZ_JOBS (default 2) at a
# time; 0 reuses the last run's build-fuzz/findings/summary.tsv. KILL_POINTS (default 10) sets
# the number of kill -9 points. BUILD (default build) is the Release build directory used for
# nnterp and the tests; it is configured and built if needed. Needs the shared test data
# (NNTERP_SHARED, default ../shared) and python3 with h5py and numpy.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${1:-150}
KILL_POINTS=${KILL_POINTS:-10}
BUILD=${BUILD:-build}
export NNTERP_SHARED=${NNTERP_SHARED:-$PWD/../shared}
S=$NNTERP_SHARED
PY=/usr/bin/python3
OUT=docs/reliability.md
[ -d "$S/models/stories260K" ] || { echo "reliability_report: no shared test data at $S"; exit 2; }

fuzz_rc=0
if [ "$FUZZ_SECONDS" != 0 ]; then
  FUZZ_JOBS=${FUZZ_JOBS:-2} tools/fuzz.sh "$FUZZ_SECONDS"
  fuzz_rc=$?
fi
[ -f build-fuzz/findings/summary.tsv ] || { echo "reliability_report: no fuzz summary; run with FUZZ_SECONDS > 0"; exit 2; }

echo "== building $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build "$BUILD" -j 2 --target nnterp test_malformed test_alloc_failures test_loading \
    test_tokenizer test_toolkit >/dev/null || { echo "reliability_report: build failed"; exit 2; }

echo "== malformed inputs and allocation failures"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BUILD/test_malformed" >"$T/malformed" 2>&1; malformed_rc=$?
"$BUILD/test_loading" >"$T/loading" 2>&1
"$BUILD/test_tokenizer" >"$T/tokenizer" 2>&1
"$BUILD/test_toolkit" >"$T/toolkit" 2>&1
"$BUILD/test_alloc_failures" >"$T/alloc" 2>&1; alloc_rc=$?
n_malformed=$(sed -n 's/^\([0-9]*\) malformed inputs.*/\1/p' "$T/malformed")
n_loading=$(grep -c ' -> ' "$T/loading")
n_tokenizer=$(grep -c ' -> ' "$T/tokenizer")
n_npy=$(grep -c '^  npy .* -> ' "$T/toolkit")
# The shell suites' bad-input cases: expectations of a non-zero exit.
n_cli=$(grep -cE '^expect "[^"]*" [12] ' tests/test_cli.sh)
n_run=$(grep -cE '^expect "' tests/test_run.sh)
n_vg=$(grep -cE '^expect "' tests/test_valgrind.sh)
alloc_points=$(sed -n 's/.* \([0-9][0-9]*\) allocations, each failed in turn.*/\1/p' "$T/alloc" |
  awk '{n += $1} END {print n}')
alloc_ops=$(grep -c 'allocations, each failed in turn' "$T/alloc")
alloc_bad=$(grep -c 'FAILED' "$T/alloc")

echo "== kill points"
cd "$T"
$PY - <<'PY'
import json, random
random.seed(7)
names = ["Lily", "Tom", "Sue", "Ben"]
words = "the dog cat park ball tree happy sad big little red blue saw went played with a and to".split()
with open("prompts.jsonl", "w") as f:
    for i in range(400):
        text = random.choice(names) + " " + " ".join(random.choice(words) for _ in range(random.randint(2, 16)))
        f.write(json.dumps({"text": text, "targets": {"a": random.sample(names, 2)}}) + "\n")
PY
job() {
  cat >"$1.json" <<JOB
{"model": "$S/models/stories260K/hf", "dataset": {"path": "prompts.jsonl", "max_tokens": 64},
 "operations": [{"op": "collect", "hooks": ["layers_output", "attentions_output"], "layers": "all"},
                {"op": "logit_lens", "top_k": 4, "targets": true}, {"op": "target_probs"},
                {"op": "generate", "max_new_tokens": 4}],
 "batch_tokens": 64, "output": "$1.h5"}
JOB
}
NNTERP=$OLDPWD/$BUILD/nnterp
job ref
start=$(date +%s%N)
"$NNTERP" run ref.json >/dev/null 2>ref.err || { cat ref.err; exit 1; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
shards=$($PY -c 'import h5py; print(h5py.File("ref.h5", "r")["progress/shard_done"].shape[0])')
compare() { # store -> differing bytes (datasets absent from the store count whole)
  $PY - "$1" <<'PY'
import h5py, numpy as np, sys
a, b = h5py.File("ref.h5", "r"), h5py.File(sys.argv[1], "r")
diff = 0
def visit(name, obj):
    global diff
    if isinstance(obj, h5py.Dataset):
        x = obj[()]
        if name not in b:
            diff += x.nbytes
            return
        y = b[name][()]
        if x.shape != y.shape or x.dtype != y.dtype:
            diff += x.nbytes
        else:
            diff += int((np.frombuffer(x.tobytes(), np.uint8) != np.frombuffer(y.tobytes(), np.uint8)).sum())
a.visititems(visit)
print(diff if b.attrs.get("status") == "complete" else diff + 1)
PY
}
kill_rows=""
total_lost=0
points=0
for k in $(seq 1 "$KILL_POINTS"); do
  job "k$k"
  # spread over 5% .. 85% of the uninterrupted run
  delay=$(( ms * (5 + 80 * (k - 1) / (KILL_POINTS > 1 ? KILL_POINTS - 1 : 1)) / 100 ))
  "$NNTERP" run "k$k.json" >/dev/null 2>&1 &
  pid=$!
  sleep "$(awk -v d="$delay" 'BEGIN {printf "%.3f", d / 1000}')"
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  committed=$(cat "k$k.h5.partial.ledger" 2>/dev/null | grep -c '^shard')
  how="kill -9 at ${delay} ms"
  if [ -e "k$k.h5" ]; then
    how="kill -9 at ${delay} ms, after the run had finished"
  else
    if [ $((k % 3)) -eq 0 ]; then # kill the resumed run too, then resume again
      "$NNTERP" run "k$k.json" --resume >/dev/null 2>&1 &
      pid=$!; sleep 0.2; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
      how="kill -9 at ${delay} ms, then kill -9 of the resume 200 ms in"
    fi
    [ -e "k$k.h5" ] || "$NNTERP" run "k$k.json" --resume >/dev/null 2>"k$k.err" || { echo "resume failed: $(cat "k$k.err")"; }
  fi
  lost=$(compare "k$k.h5")
  points=$((points + 1))
  total_lost=$((total_lost + lost))
  kill_rows+="| $k | $how | $committed | $lost |"$'\n'
  echo "  kill point $k: $how, $committed shards committed, $lost bytes differ"
done
# SIGTERM: drain, commit, exit 3, resume.
job term
"$NNTERP" run term.json >/dev/null 2>&1 &
pid=$!; sleep "$(awk -v m="$ms" 'BEGIN {printf "%.3f", m / 2000}')"; kill -TERM $pid; wait $pid; term_code=$?
[ -e term.h5 ] || "$NNTERP" run term.json --resume >/dev/null 2>&1
term_lost=$(compare term.h5)
points=$((points + 1))
total_lost=$((total_lost + term_lost))
kill_rows+="| $points | SIGTERM at $((ms / 2)) ms (exit $term_code), then --resume | - | $term_lost |"$'\n'
echo "  SIGTERM: exit $term_code, $term_lost bytes differ"
cd "$OLDPWD"

echo "== writing $OUT"
fuzz_rows=$(awk -F'\t' 'NR > 1 {
  printf "| `fuzz_%s` | %s | %d | %d s | %d | %d | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' \
  build-fuzz/findings/summary.tsv)
fuzz_total=$(awk -F'\t' 'NR > 1 {n += $3} END {printf "%d", n}' build-fuzz/findings/summary.tsv)
fuzz_secs=$(awk -F'\t' 'NR > 1 {n += $4} END {printf "%d", n}' build-fuzz/findings/summary.tsv)
fixed_rows=$(grep -v '^#' tests/fuzz/findings.tsv | awk -F'\t' '{
  printf "| %d | `%s` | %s | %s | %s | %s |\n", NR, $1, $2, $3, $4, $5 }')
per_target=$(grep -v '^#' tests/fuzz/findings.tsv | cut -f1 | sort | uniq -c |
  awk '{printf "%s`%s` %d", (NR > 1 ? ", " : ""), $2, $1}')
n_fixed=$(grep -vc '^#' tests/fuzz/findings.tsv)
by_fuzzer=$(grep -v '^#' tests/fuzz/findings.tsv | cut -f2 | grep -c fuzzer)
malformed_total=$((n_malformed + n_loading + n_tokenizer + n_npy + n_cli + n_run + n_vg))
when=$(date -u '+%Y-%m-%d %H:%M UTC')
cores=$(nproc)

cat >"$OUT" <<EOF
# Reliability: hostile inputs, injected failures and crashes

Checkpoints, tokenizers, job files and datasets come from strangers, and jobs get killed. This
page is generated by \`tools/reliability_report.sh\` (last run: $when, on a machine with $cores
cores shared with other work); every figure below comes from that run, except the cost of the
weight scan, measured once by hand.

## Fuzzing

\`tools/fuzz.sh [SECONDS] [TARGET...]\` builds the libFuzzer targets of \`tests/fuzz/\` with clang,
AddressSanitizer and UndefinedBehaviorSanitizer (CMake option \`NNTERP_FUZZ\`, build directory
\`build-fuzz\`), seeds them from \`tests/fuzz/corpus/<target>/\` and from the real files of the
shared data (\`tests/fuzz/make_seeds.py\`), runs each for SECONDS and writes reproducers to
\`build-fuzz/findings/<target>/\`. CI runs it for 20 s per target. The checked-in corpora,
reproducers of fixed findings included, are replayed by \`ctest\` in every build
(\`fuzz_replay_<target>\`, through \`tests/fuzz/replay.c\`).

| target | what it feeds |
|---|---|
| \`fuzz_safetensors\` | bytes to \`nn_st_parse\`; every accepted float tensor converted and looked up |
| \`fuzz_st_index\` | bytes as \`model.safetensors.index.json\` beside two valid shards, \`nn_st_open_dir\` |
| \`fuzz_config\` | text to \`nn_config_from_hf\`; an accepted config loaded against the tiny Llama checkpoint |
| \`fuzz_tokenizer_json\` | bytes as \`tokenizer.json\`, \`nn_tokenizer_load\`; an accepted tokenizer encodes fixed texts and decodes its whole vocabulary |
| \`fuzz_tokenizer_encode\` | bytes encoded by the real GPT-2 and Llama 2 tokenizers (\`tokenizer.json\`, and Llama 2's \`tokenizer.bin\`), decoded whole and streamed; the bytes as ids decoded too |
| \`fuzz_llama2c_model\` | bytes as a llama2.c checkpoint, \`nn_model_load_llama2c\` |
| \`fuzz_llama2c_tokenizer\` | bytes as a llama2.c \`tokenizer.bin\`; accepted vocabularies encode and decode |
| \`fuzz_npy\` | bytes as a \`.npy\` vector, \`nn_npy_read_vector\` |
| \`fuzz_job\` | text to \`nn_job_parse\` |
| \`fuzz_dataset\` | bytes as a JSONL (with and without targets) or text dataset, \`nn_dataset_read\` (line limit 4 KB) |

Last run: $(cat build-fuzz/findings/run.txt 2>/dev/null || echo "(unknown)"); $fuzz_total executions in all. The
time column is the measured wall time of each target.

| target | result | executions | time | crashes | corpus | coverage (edges) |
|---|---|---|---|---|---|---|
$fuzz_rows

## Crashes, leaks and undefined behaviour found and fixed

$n_fixed in all ($by_fuzzer found by the fuzzers, the others by reading the parsers and by the
malformed-input suite); per parser: $per_target. The fuzzers' reproducers are in
\`tests/fuzz/corpus/<target>/crash-*\`.

| # | parser | found by | file | bug | fix |
|---|---|---|---|---|---|
$fixed_rows

## Malformed inputs

$malformed_total crafted bad inputs, each with the exact error it must give (naming the file and the
field or line), a non-zero exit from the command line, nothing left allocated, and no crash
under AddressSanitizer:

| suite | bad inputs |
|---|---|
| \`tests/test_malformed.c\`: NaN/infinity in F32, F16, BF16 and llama2.c weights, wrong dtypes, lying header lengths, every tensor and table boundary cut, shape overflow, nesting 2000-5000 deep, duplicate keys, \\\\u0000, invalid UTF-8, empty files, directories and unreadable files (skipped as root), the line limit, the ledger | $n_malformed |
| \`tests/test_loading.c\` | $n_loading |
| \`tests/test_tokenizer.c\` | $n_tokenizer |
| \`tests/test_toolkit.c\` (\`.npy\`) | $n_npy |
| \`tests/test_cli.sh\` | $n_cli |
| \`tests/test_run.sh\` | $n_run |
| \`tests/test_valgrind.sh\` (under valgrind: no invalid access, no definite or indirect leak) | $n_vg |

Decisions:

- **NaN and infinity in weights** are refused at load time, naming the file, the tensor and the
  element (\`tensor 'transformer.h.1.mlp.c_fc.weight' holds NaN at element 7\`; for llama2.c, the
  table and the layer). Converted F16/BF16 tensors are checked as they are converted; F32 tensors,
  mapped in place, by one vectorised pass over the bytes the process maps anyway (measured on this
  machine: about 10 GB/s at -O3, 0.1 s per GB of weights in the page cache; from disk the pass moves
  reading earlier, it adds none, since the first forward pass reads the same pages). Set
  \`NNTERP_CHECK_WEIGHTS=0\` to skip it (say for \`nnterp inspect\` of a very large F32 checkpoint).
- **Duplicate keys** in \`config.json\`, job files and dataset lines are errors: cJSON finds the
  first, Python's \`json\` (hence transformers) keeps the last.
- A **\\\\u0000** escape in a job file or a dataset line is an error: it would cut the string short.
- **Limits**: a safetensors header above 100 MB or past the end of the file, a tensor past the
  data section, a \`.npy\` header above 64 KiB, a token count beyond the context (\`nn_forward\`,
  and \`dataset.max_tokens\` of a job), a dataset line beyond \`dataset.max_line_bytes\` (default
  16 MiB; checked on the mapped file before anything is allocated), JSON files beyond their size
  caps (config 4 MiB, job 16 MiB, tokenizer 512 MiB) and JSON nested deeper than cJSON's 1000
  levels.

## Allocation failures

\`tests/test_alloc_failures.c\` makes each allocation fail in turn (\`nn_alloc_fail_after(N)\` for N =
1, 2, ... until the operation needs fewer): $alloc_ops operations (loading F32, BF16, sharded MoE,
Falcon and llama2.c checkpoints; two tokenizers loading, encoding and decoding; forward passes
with hooks; the logit lens; a job file; a dataset), $alloc_points failure points, $alloc_bad
failing. Each must return an error with a message (or succeed once N passes the allocations made),
never crash, and leak nothing: LeakSanitizer checks in the AddressSanitizer build, and the
ordinary glibc build compares the heap's bytes in use before and after every run.

## Kill points

\`nnterp run\` of stories260K over 400 prompts ($shards shards, ${ms} ms uninterrupted) killed with
\`kill -9\` at $KILL_POINTS points spread over 5% to 85% of that time (every third one killed again while resuming), and
stopped once with SIGTERM; each then resumed with \`--resume\` and compared, dataset by dataset
and byte by byte, with the uninterrupted store.

| point | interruption | shards committed at the first kill | bytes that differ |
|---|---|---|---|
$kill_rows
**Bytes lost: $total_lost** over $points interruptions. \`tests/test_run.sh\` covers the same at three
points, SIGTERM (exit 3), a different job on --resume, and a full disk (\`ulimit -f\`).
EOF
echo "wrote $OUT: fuzzing $fuzz_total executions, $n_fixed bugs fixed, $malformed_total malformed inputs, $points kill points, $total_lost bytes lost"
[ "$fuzz_rc" -eq 0 ] && [ "$malformed_rc" -eq 0 ] && [ "$alloc_rc" -eq 0 ] && [ "$total_lost" -eq 0 ]
