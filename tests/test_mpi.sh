#!/usr/bin/env bash
# nnterp run under mpirun: the store is bitwise identical whatever the number of ranks; killing one
# rank mid-job (kill -9) and resuming with a different rank count gives the uninterrupted store;
# a pipeline stage that fails alone (injected) ends the job, and --resume completes it;
# the tests leave no stray processes and no files outside their temporary directory.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_mpi models/stories260K
need_command test_mpi mpirun openmpi-bin
need_python test_mpi h5py
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d)
# Only this test's own processes (their working directory is $T): other tests run the same
# command lines in parallel under ctest -j, and a pattern match on the command killed them.
ours() { # command-line pattern: the matching processes whose working directory is $T
  local p
  for p in $(pgrep -f "$1"); do
    [ "$p" != $$ ] && [ "$(readlink /proc/$p/cwd 2>/dev/null)" = "$T" ] && echo "$p"
  done
}
trap 'for p in $(ours "$NNTERP run"); do kill -9 $p 2>/dev/null; done; rm -rf "$T"' EXIT
cd "$T"
run() { timeout 300 mpirun --oversubscribe -np "$@"; }

/usr/bin/python3 - <<'PY'
import json, random
random.seed(5)
words = "Lily Tom the dog cat park ball tree happy sad big little red saw went played with and to".split()
with open("prompts.jsonl", "w") as f:
    for i in range(150):
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(random.randint(3, 20))),
                            "targets": {"lily": "Lily", "tom": "Tom"}}) + "\n")
import numpy as np
np.save("v.npy", np.linspace(-1, 1, 64).astype(np.float32))
PY
cat >job.json <<JOB
{"model": "$S/models/stories260K/hf", "dataset": {"path": "prompts.jsonl", "max_tokens": 64},
 "operations": [{"op": "collect", "hooks": ["layers_output", "mlps_output"], "layers": "all"},
                {"op": "logit_lens", "top_k": 5, "targets": true},
                {"op": "steer", "vector": "v.npy", "layers": [2], "factor": 3.0, "generate": 4}],
 "dtype": "bfloat16", "batch_tokens": 96, "output": "out.h5"}
JOB
same() { # store a, store b
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = []
def check(name, obj):
    if isinstance(obj, h5py.Dataset) and not np.array_equal(obj[:], b[name][:]):
        bad.append(name)
a.visititems(check)
assert a.attrs["status"] == b.attrs["status"] == "complete"
sys.exit(1 if bad else 0)
PY
}
"$NNTERP" run job.json >/dev/null 2>err && mv out.h5 single.h5 || bad "plain run: $(cat err)"
stages() { # stages -> a job file with that many pipeline stages
  sed "s/\"output\": \"out.h5\"/\"parallel\": {\"pipeline_stages\": $1}, \"output\": \"out.h5\"/" job.json >"job$1.json"
  echo "job$1.json"
}
# ranks x stages: 1, 2x1, 1x2, 1x3, 2x2, 1x4
for layout in "1 1" "2 1" "2 2" "3 3" "4 2" "4 4"; do
  set -- $layout
  rm -f out.h5*
  run "$1" "$NNTERP" run "$(stages "$2")" >out 2>err
  [ -f out.h5 ] && /usr/bin/python3 -c 'import sys, h5py; print(h5py.File(sys.argv[1], "r").attrs["layer_split"])' \
    out.h5 >"split$2.txt"
  if [ -f out.h5 ] && same single.h5 out.h5; then
    ok "mpirun -np $1, $(( $1 / $2 )) replica(s) x $2 stage(s): bitwise identical to the plain run"
  else bad "mpirun -np $1 with $2 stages: $(cat out err | head -5)"; fi
done

# Kill one rank mid-job, resume with another rank count and split.
for resume_np in 3 1; do
  rm -f out.h5*
  run 2 "$NNTERP" run job.json >/dev/null 2>&1 &
  launcher=$!
  for _ in $(seq 100); do [ -f out.h5.partial.ledger ] && grep -q shard out.h5.partial.ledger 2>/dev/null && break; sleep 0.05; done
  victim=$(ours "$NNTERP run job.json" | grep -v "^$launcher\$" | tail -1)
  [ -n "$victim" ] && kill -9 "$victim"
  wait $launcher 2>/dev/null
  if [ -f out.h5 ]; then skip "(the job finished before the kill; nothing to resume)"; continue; fi
  [ -e out.h5.partial ] || { bad "no partial store after killing a rank"; continue; }
  if [ "$resume_np" = 1 ]; then "$NNTERP" run job.json --resume >out 2>err
  else run "$resume_np" "$NNTERP" run job.json --resume >out 2>err; fi
  if [ -f out.h5 ] && grep -q resumed out && same single.h5 out.h5; then
    ok "kill -9 of one rank of 2, --resume with $resume_np rank(s): identical to the uninterrupted store"
  else bad "resume with $resume_np after killing a rank: $(cat out err | head -5)"; fi
done

# A 2x2 pipeline job (2 replicas of 2 stages) killed mid-run resumes as 1x2: another replica count.
rm -f out.h5*
run 4 "$NNTERP" run "$(stages 2)" >/dev/null 2>&1 &
launcher=$!
for _ in $(seq 100); do [ -f out.h5.partial.ledger ] && grep -q shard out.h5.partial.ledger 2>/dev/null && break; sleep 0.05; done
victim=$(ours "$NNTERP run job2.json" | grep -v "^$launcher\$" | tail -1)
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher 2>/dev/null
if [ -f out.h5 ]; then skip "(the pipeline job finished before the kill)"
else
  # the job file must stay the same to resume; the replica count comes from the rank count
  run 2 "$NNTERP" run job2.json --resume >out 2>err
  if [ -f out.h5 ] && grep -q resumed out && same single.h5 out.h5; then
    ok "kill -9 in a 2x2 pipeline run, --resume as 1x2: identical to the uninterrupted store"
  else bad "pipeline resume: $(cat out err | head -5)"; fi
fi

# A stage that fails alone mid-round (NNTERP_FAIL_AT_BATCH injects an error at one stage's batch)
# ends the whole job instead of leaving the other stage waiting for its rows; no final store;
# --resume without the fault gives the uninterrupted store.
for at in 1:5 0:9; do
  rm -f out.h5*
  NNTERP_FAIL_AT_BATCH=$at run 2 -x NNTERP_FAIL_AT_BATCH "$NNTERP" run "$(stages 2)" >out 2>err
  code=$?
  if [ $code -ne 0 ] && [ $code -ne 124 ] && [ ! -e out.h5 ] && [ -e out.h5.partial ] &&
    grep -q "pipeline stage ${at%%:*}): error: batch ${at##*:}: the failure" err &&
    grep -q "continue with: nnterp run job2.json --resume" err; then
    run 2 "$NNTERP" run job2.json --resume >out 2>err
    if [ -f out.h5 ] && same single.h5 out.h5; then
      ok "stage ${at%%:*} failing at batch ${at##*:} ends the 2-stage job (exit $code); --resume: identical store"
    else bad "resume after an injected stage failure at $at: $(cat out err | head -5)"; fi
  else bad "injected stage failure at $at: exit $code, $(head -5 err)"; fi
done
# Without a pipeline the failure is an ordinary error, and no store is left under the final name.
rm -f out.h5*
NNTERP_FAIL_AT_BATCH=0:3 "$NNTERP" run job.json >out 2>err
code=$?
[ $code -eq 1 ] && [ ! -e out.h5 ] && grep -q "batch 3: the failure" err &&
  ok "an injected failure in a plain run: exit 1 with the error, no final store" ||
  bad "plain run with an injected failure: exit $code, $(head -3 err)"
NNTERP_FAIL_AT_BATCH=x "$NNTERP" run job.json >out 2>err
code=$?
[ $code -eq 2 ] && grep -q "NNTERP_FAIL_AT_BATCH='x': expected STAGE:BATCH" err &&
  ok "a malformed NNTERP_FAIL_AT_BATCH is a usage error (exit 2)" ||
  bad "malformed NNTERP_FAIL_AT_BATCH: exit $code, $(head -3 err)"

# Layouts that cannot work: clear errors on every rank.
run 3 "$NNTERP" run "$(stages 2)" >out 2>err
grep -q "cannot form replicas of parallel.pipeline_stages 2" err && ok "3 ranks, 2 stages: a clear error" || bad "3 ranks/2 stages: $(head -3 err)"
"$NNTERP" run "$(stages 2)" >out 2>err
grep -q "1 rank cannot form replicas" err && ok "a plain run of a 2-stage job: a clear error" || bad "plain 2-stage: $(head -3 err)"
run 9 "$NNTERP" run "$(stages 9)" >out 2>err
grep -q "pipeline_stages 9 exceeds the model's 5 layers" err && ok "more stages than layers: a clear error" || bad "9 stages: $(head -3 err)"

# Shards are handed out on demand: a replica slowed down (its core shared with three busy loops)
# takes fewer of them than one with a core of its own, and the store is still the same.
rm -f out.h5*
hogs=""
for _ in 1 2 3; do taskset -c 1 sh -c 'while :; do :; done' & hogs="$hogs $!"; done
timeout 300 mpirun --oversubscribe --bind-to none -np 1 taskset -c 0 "$NNTERP" run job.json : \
  -np 1 taskset -c 1 "$NNTERP" run job.json >out 2>err
kill $hogs 2>/dev/null; wait $hogs 2>/dev/null
read -r fast slow <<<"$(sed -n 's/.*shards taken per replica (handed out on demand): //p' out)"
if [ -f out.h5 ] && same single.h5 out.h5 && [ -n "$slow" ] && [ "$fast" -gt "$slow" ]; then
  ok "a replica on a shared core took $slow shards, the other $fast: identical store"
else bad "on-demand shards: fast '$fast' slow '$slow': $(cat out err | head -5)"; fi

# nnterp plan: the split it prints is the one the run stored; impossible layouts are errors.
for P in 2 3 4; do
  "$NNTERP" plan -m "$S/models/stories260K/hf" --ranks "$P" --stages "$P" --batch-tokens 96 \
    --prompt-tokens 12 >plan 2>err || { bad "plan with $P stages: $(head -3 err)"; continue; }
  planned="[$(sed -n 's/^ *[0-9]*  \[\([0-9]*\), \([0-9]*\)).*/[\1, \2]/p' plan | paste -sd'|' - | sed 's/|/, /g')]"
  if [ "$planned" = "$(cat "split$P.txt" 2>/dev/null)" ] && grep -q "^predicted  *[0-9]* tokens/s" plan; then
    ok "plan with $P stages: the layer split of the run ($planned) and a prediction"
  else bad "plan with $P stages: planned $planned, the run stored $(cat "split$P.txt" 2>/dev/null)"; fi
done
"$NNTERP" plan -m "$S/models/stories260K/hf" --ranks 3 --stages 2 >out 2>err
grep -q "3 ranks cannot form replicas of 2 pipeline stages" err && ok "plan: 3 ranks, 2 stages: a clear error" || bad "plan 3/2: $(head -3 err)"
"$NNTERP" plan -m "$S/models/stories260K/hf" --ranks 9 --stages 9 >out 2>err
grep -q "9 pipeline stages exceed the model's 5 layers" err && ok "plan: more stages than layers: a clear error" || bad "plan 9: $(head -3 err)"

sleep 0.2
# no nnterp process of this test left behind
stray=$(ours "$NNTERP run")
[ -z "$stray" ] && ok "no stray processes" || bad "stray nnterp processes:$stray"
finish test_mpi
