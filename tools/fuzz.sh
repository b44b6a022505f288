#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer, own build
# directory build-fuzz) and runs each for SECONDS (default 30). Findings (crash-*, leak-*,
# timeout-*, oom-* reproducers and each target's log) go to build-fuzz/findings/; one summary line
# per target is printed and written to build-fuzz/findings/summary.tsv. Exits 1 when any target
# found something.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]     e.g. tools/fuzz.sh 20, tools/fuzz.sh 120 job npy
#   FUZZ_JOBS=2 tools/fuzz.sh 180           two targets at a time
#
# Seeds: tests/fuzz/corpus/<target>/ (checked in) and seeds made from the shared test data
# (tests/fuzz/make_seeds.py; NNTERP_SHARED, default ../shared). What a run discovers accumulates in
# build-fuzz/corpus/<target>/ for the next run.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-30}
shift || true
JOBS=${FUZZ_JOBS:-1}
ALL="safetensors st_index config tokenizer_json tokenizer_encode llama2c_model llama2c_tokenizer npy job dataset jinja sae_cfg"
TARGETS=${*:-$ALL}
B=build-fuzz
SHARED=${NNTERP_SHARED:-$PWD/../shared}

mkdir -p $B
cmake -S . -B $B -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNTERP_FUZZ=ON \
  -DNNTERP_SHARED="$SHARED" >$B/configure.log 2>&1 || { cat $B/configure.log; exit 2; }
cmake --build $B -j 2 --target fuzz_all >$B/build.log 2>&1 || { tail -40 $B/build.log; exit 2; }
mkdir -p $B/findings $B/corpus
if [ -d "$SHARED/reference" ]; then
  rm -rf $B/seeds && /usr/bin/python3 tests/fuzz/make_seeds.py "$SHARED" $B/seeds
else
  echo "fuzz: no shared test data at $SHARED: seeds are only the checked-in ones"
  mkdir -p $B/seeds
fi
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$PWD/tools/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export NNTERP_SHARED=$SHARED

run_one() {
  local t=$1 log=$B/findings/$1.log
  mkdir -p $B/corpus/$t $B/findings/$t $B/seeds/$t
  local before
  before=$(find $B/findings/$t -type f | wc -l)
  local dict=()
  [ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
  local start=$SECONDS
  $B/fuzz_$t -max_total_time="$SECONDS_PER" -print_final_stats=1 -timeout=10 -error_exitcode=99 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -artifact_prefix=$B/findings/$t/ "${dict[@]}" \
    $B/corpus/$t tests/fuzz/corpus/$t $B/seeds/$t >"$log" 2>&1
  local rc=$? took=$((SECONDS - start))
  local execs found inputs cov status
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=$(( $(find $B/findings/$t -type f | wc -l) - before ))
  inputs=$(find $B/corpus/$t -type f | wc -l)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ $rc -eq 77 ]; then status=SKIPPED; grep -m1 SKIPPED "$log"
  elif [ $rc -eq 0 ] && [ "$found" -eq 0 ]; then status=ok
  else status=FOUND; [ "$found" -eq 0 ] && found=1; fi
  printf '%-22s %-7s %10s executions in %4ss, %d crashes, corpus %d inputs, coverage %s\n' \
    "fuzz_$t" "$status" "${execs:-0}" "$took" "$found" "$inputs" "${cov:-0}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$status" "${execs:-0}" "$took" "$found" "$inputs" \
    "${cov:-0}" >"$B/findings/$t.summary"
  if [ "$status" = FOUND ]; then
    grep -m3 -E 'ERROR: |SUMMARY: |runtime error' "$log" | sed 's/^/    /'
    ls $B/findings/$t | sed 's/^/    reproducer: /' | tail -3
  fi
}

echo "fuzz: ${SECONDS_PER}s per target, $JOBS at a time"
echo "$SECONDS_PER s per target requested, $JOBS at a time, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores" \
  >$B/findings/run.txt
for t in $TARGETS; do
  if [ ! -x $B/fuzz_$t ]; then echo "fuzz: unknown target '$t' (targets: $ALL)"; exit 2; fi
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_one "$t" &
done
wait
printf 'target\tstatus\texecutions\tseconds\tcrashes\tcorpus\tcoverage\n' >$B/findings/summary.tsv
for t in $TARGETS; do cat $B/findings/$t.summary >>$B/findings/summary.tsv; done
if cut -f2 $B/findings/summary.tsv | grep -q FOUND; then
  echo "fuzz: FINDINGS in $B/findings (replay one: $B/fuzz_TARGET FILE)"
  exit 1
fi
echo "fuzz: no findings"
