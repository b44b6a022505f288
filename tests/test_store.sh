#!/usr/bin/env bash
# The store against what can go wrong around it (issue 17): a second process never touches a
# running job's files; --resume notices an edited dataset and changed weights (also through the
# Hugging Face cache) and names the field of a changed job, accepts what cannot change results
# (key order, explicit defaults, another pipeline split), and says so on a complete store; a torn
# ledger line never blocks later resumes; a rerun without --resume refuses an unfinished store; a
# bad output is found before any work and a failed final rename keeps the finished store;
# --dry-run writes nothing; the reservation is released at commit; small input defects (BOM, NUL,
# empty target lists, targets fields, factors, vocabularies, long contexts, progress).
# Interruptions are deterministic: NNTERP_FAIL_AT_BATCH=0:B stops a plain run with an error at
# batch B after committing batches 0..B-1 (a plain run commits each shard), and SIGSTOP holds a
# running job still while another process tries its files.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_store models/stories260K
need_python test_store h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'for p in $(jobs -p); do kill -CONT $p 2>/dev/null; kill -9 $p 2>/dev/null; done; rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
cp -r "$S/models/stories260K/hf" model

$PY - <<'PY'
import json, random
random.seed(7)
names = ["Lily", "Tom", "Sue", "Ben"]
words = "the dog cat park ball tree happy sad big little red saw went played with a and to".split()
with open("p.jsonl", "w") as f:
    for i in range(120):
        text = random.choice(names) + " " + " ".join(random.choice(words) for _ in range(random.randint(2, 10)))
        f.write(json.dumps({"text": text, "targets": {"a": ["Lily"], "b": ["park"]}}) + "\n")
PY
OPS='[{"op": "collect", "hooks": ["layers_output"], "layers": "all"}, {"op": "logit_lens", "top_k": 4, "targets": true}]'
mkjob() { # file output [extra fields] [model] [dataset]
  cat >"$1" <<JOB
{"model": "${4:-model}", "dataset": {"path": "${5:-p.jsonl}", "max_tokens": 32},
 "operations": $OPS, "batch_tokens": 32, "output": "$2" ${3:-}}
JOB
}
interrupt() { # job batch: a plain run that stops with an error at that batch, store kept
  NNTERP_FAIL_AT_BATCH=0:$2 "$NNTERP" run "$1" >/dev/null 2>&1
}
expect_fail() { # name needle command...: exit 1 with the needle in stderr
  local name=$1 needle=$2; shift 2
  "$@" >out 2>err; local rc=$?
  if [ $rc -eq 1 ] && grep -qF -- "$needle" err; then ok "$name"; else bad "$name (exit $rc: $(head -c 600 err))"; fi
}
held() { # job output: start the job, hold it with SIGSTOP once its store exists; pid in $HELD
  "$NNTERP" run "$1" >held.out 2>held.err &
  local pid=$!
  HELD=$pid
  for _ in $(seq 400); do
    grep -q "nnterp-ledger" "$2.partial.ledger" 2>/dev/null && break
    sleep 0.01
  done
  kill -STOP $pid 2>/dev/null
}

mkjob ref.json ref.h5
"$NNTERP" run ref.json >/dev/null 2>err || bad "reference run: $(cat err)"

# D1: a second process (run, trace, resume) while a job runs: refused, the job's files untouched.
mkjob twin.json twin.h5
held twin.json twin.h5; pid=$HELD
if [ -e twin.h5 ]; then skip "the job finished before it could be held"; else
  expect_fail "a second run of a running job is refused" "another process is running this job" "$NNTERP" run twin.json
  expect_fail "a --resume of a running job is refused" "another process is running this job" "$NNTERP" run twin.json --resume
  expect_fail "a trace into a running job's output is refused" "twin.h5.partial already exists" \
    "$NNTERP" trace -m model -p "hi" --save layers_output -o twin.h5
  [ -e twin.h5.partial ] && [ -e twin.h5.partial.ledger ] && ok "the running job's files are still there" || bad "the second process removed the job's files"
  kill -CONT $pid; wait $pid; code=$?
  [ $code -eq 0 ] && same_store ref.h5 twin.h5 && ok "the held job then completes, identical to the reference" || bad "held job: exit $code $(cat held.err)"
fi

# D5: a rerun without --resume refuses an unfinished store and leaves it as it was.
mkjob d5.json d5.h5
interrupt d5.json 5
sum=$(md5sum d5.h5.partial d5.h5.partial.ledger)
expect_fail "a rerun without --resume refuses an unfinished store" "d5.h5.partial holds 5 committed shards" "$NNTERP" run d5.json
[ "$(md5sum d5.h5.partial d5.h5.partial.ledger)" = "$sum" ] && ok "the unfinished store is untouched" || bad "the rerun changed the unfinished store"
"$NNTERP" run d5.json --resume >/dev/null 2>err && same_store ref.h5 d5.h5 && ok "--resume then completes it" || bad "resume d5: $(cat err)"
# --resume on a complete store: nothing to do, exit 0, and it says so.
"$NNTERP" run d5.json --resume >out 2>err && grep -q "d5.h5 is complete already" out && ok "--resume of a complete store exits 0 and says so" || bad "resume complete: $(cat out err)"

# D2: an edited dataset is refused on resume, naming the line; so is one of another length.
cp p.jsonl d2.jsonl
mkjob d2.json d2.h5 "" model d2.jsonl
interrupt d2.json 6
$PY - <<'PY'
import json
lines = open("d2.jsonl").read().splitlines()
j = json.loads(lines[29]); j["text"] += " dog"; lines[29] = json.dumps(j)
open("d2.jsonl", "w").write("\n".join(lines) + "\n")
PY
expect_fail "--resume refuses an edited dataset and names the line" "d2.jsonl:30: prompt 29's tokens differ" "$NNTERP" run d2.json --resume
head -n 60 p.jsonl >d2.jsonl
expect_fail "--resume refuses a dataset of another length" "holds 120 prompts, the dataset d2.jsonl gives 60" "$NNTERP" run d2.json --resume

# D3 (a): weights changed in place (one tensor scaled: same header, same size) are refused.
cp -r model wmodel
mkjob d3.json d3.h5 "" wmodel
interrupt d3.json 4
$PY - <<'PY'
import json, struct, numpy as np
path = "wmodel/model.safetensors"
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
name = next(k for k in header if k.endswith("mlp.down_proj.weight"))
a, b = header[name]["data_offsets"]
w = np.frombuffer(bytes(data[8 + n + a:8 + n + b]), dtype=np.float32) * 1.5
data[8 + n + a:8 + n + b] = w.astype(np.float32).tobytes()
open(path, "wb").write(data)
PY
expect_fail "--resume refuses changed weights (same header and size)" "d3.h5.partial was made with other weights: model.safetensors" "$NNTERP" run d3.json --resume

# D3 (b): through the Hugging Face cache, refs/main moved to another snapshot.
mkdir -p hf/models--acme--demo/refs hf/models--acme--demo/snapshots
cp -r model hf/models--acme--demo/snapshots/abc123
cp -r wmodel hf/models--acme--demo/snapshots/def456
echo abc123 >hf/models--acme--demo/refs/main
mkjob hfres.json hfres.h5 "" acme/demo
HF_HUB_CACHE=$T/hf NNTERP_FAIL_AT_BATCH=0:4 "$NNTERP" run hfres.json >/dev/null 2>&1
$PY -c 'import h5py; f = h5py.File("hfres.h5.partial", "r"); assert f.attrs["model_snapshot"] == "abc123", f.attrs["model_snapshot"]' \
  && ok "the store records the resolved snapshot (abc123)" || bad "no model_snapshot attribute"
echo def456 >hf/models--acme--demo/refs/main
HF_HUB_CACHE=$T/hf expect_fail "--resume refuses another snapshot's weights" "made with other weights" "$NNTERP" run hfres.json --resume
echo abc123 >hf/models--acme--demo/refs/main
HF_HUB_CACHE=$T/hf "$NNTERP" run hfres.json --resume >/dev/null 2>err && same_store ref.h5 hfres.h5 && ok "back on abc123 the resume completes, identical" || bad "hf resume: $(cat err)"

# Resume identity: key order, explicit defaults and the layout are no change; a result field is
# refused by name.
mkjob id.json id.h5
interrupt id.json 5
$PY - <<'PY'
import json
j = json.load(open("id.json"))
j = dict(reversed(list(j.items())))           # keys in another order
j["shard_batches"] = 1                          # an explicit default
j["parallel"] = {"pipeline_stages": 1}
j["dataset"]["max_line_bytes"] = 1 << 20        # a reading limit
json.dump(j, open("id2.json", "w"), indent=2)
j["operations"][1]["top_k"] = 5
json.dump(j, open("id3.json", "w"))
j["operations"][1]["top_k"] = 4
j["dtype"] = "bfloat16"
json.dump(j, open("id4.json", "w"))
PY
expect_fail "a changed op field is refused by name" "operations[1].top_k is 4 in the store, 5 in id3.json" "$NNTERP" run id3.json --resume
expect_fail "a changed dtype is refused by name" 'dtype is "float32" in the store, "bfloat16" in id4.json' "$NNTERP" run id4.json --resume
"$NNTERP" run id2.json --resume >out 2>err && grep -q resumed out && same_store ref.h5 id.h5 \
  && ok "key order, explicit defaults, parallel and max_line_bytes do not block --resume" || bad "identity resume: $(cat err)"

# D4: a torn last ledger line is cut off, so later resumes keep working.
mkjob d4.json d4.h5
interrupt d4.json 3
printf 'shar' >>d4.h5.partial.ledger
NNTERP_FAIL_AT_BATCH=0:8 "$NNTERP" run d4.json --resume >/dev/null 2>&1
grep -q "^shard 7$" d4.h5.partial.ledger && ! grep -q "shar[^d]" d4.h5.partial.ledger && ok "the torn line was cut before the next append" || bad "ledger: $(cat d4.h5.partial.ledger | tr '\n' ' ')"
"$NNTERP" run d4.json --resume >/dev/null 2>err && same_store ref.h5 d4.h5 && ok "a second resume after a torn ledger completes, identical" || bad "d4: $(cat err)"

# D6: bad outputs are found before any work, leaving nothing; a failed rename keeps the store.
mkdir results
for o in results "" . "results/" ".."; do
  mkjob d6.json "$o"
  "$NNTERP" run d6.json >out 2>err; code=$?
  if [ $code -eq 1 ] && grep -qE "directory|empty" err && [ -z "$(ls -A results)" ] &&
    ! ls -a "$o.partial" "$o.partial.ledger" >/dev/null 2>&1; then
    ok "output '$o' refused before any work, nothing left"
  else bad "output '$o': exit $code $(cat err)"; fi
done
mkjob d6.json p.jsonl
expect_fail "the dataset as the output is refused" "output 'p.jsonl' is the dataset" "$NNTERP" run d6.json
mkjob d6b.json out6.h5
held d6b.json out6.h5; pid=$HELD
if [ -e out6.h5 ]; then skip "the job finished before it could be held"; else
  mkdir out6.h5
  kill -CONT $pid; wait $pid; code=$?
  [ $code -eq 1 ] && grep -q "the finished store is kept as out6.h5.partial" held.err && $PY -c '
import h5py; assert h5py.File("out6.h5.partial", "r").attrs["status"] == "complete"' \
    && ok "a failed final rename keeps the finished store as .partial and says so" || bad "rename failure: exit $code $(cat held.err)"
fi

# --dry-run: the plan, the layout and the arrays, and nothing written.
mkjob dry.json dry.h5
before=$(ls -A | sort)
"$NNTERP" run dry.json --dry-run >out 2>err; code=$?
[ $code -eq 0 ] && [ "$(ls -A | grep -v '^out$\|^err$' | sort)" = "$(echo "$before" | grep -v '^out$\|^err$')" ] &&
  grep -q "^plan .* shards" out && grep -q "^layout .*1 rank" out && grep -q "/logit_lens/top_ids" out && grep -q "^store .*MB" out \
  && ok "--dry-run prints the plan, layout and arrays, and writes nothing" || bad "dry run: exit $code $(cat out err)"
mkjob dry2.json dry2.h5 ', "dtyp": 1'
expect_fail "--dry-run still validates the job" "unknown field 'dtyp'" "$NNTERP" run dry2.json --dry-run

# --stages overrides the job's split on resume (and on a fresh run).
mkjob st.json st.h5 ', "parallel": {"pipeline_stages": 2}'
expect_fail "a plain run of a 2-stage job names the override" "--stages S" "$NNTERP" run st.json --resume
"$NNTERP" run st.json --stages 1 >/dev/null 2>err && same_store ref.h5 st.h5 && ok "--stages 1 runs a 2-stage job in one process, identical" || bad "--stages: $(cat err)"

# D13: the reservation is released at commit: no more blocks than the file's size (+ a block).
$PY -c '
import os
st = os.stat("ref.h5")
assert st.st_blocks * 512 <= st.st_size + 65536, (st.st_blocks * 512, st.st_size)' \
  && ok "a finished store holds no reserved blocks beyond its size" || bad "reserved blocks kept: $(du -k ref.h5) $(stat -c %s ref.h5)"

# D7: a model whose context exceeds batch_tokens runs with default settings.
cp -r model longctx
$PY - <<'PY'
import json
c = json.load(open("longctx/config.json")); c["max_position_embeddings"] = 131072
json.dump(c, open("longctx/config.json", "w"))
PY
printf '{"model": "longctx", "dataset": {"path": "p.jsonl"}, "operations": [{"op": "target_probs"}], "output": "lc.h5"}' >lc.json
"$NNTERP" run lc.json >/dev/null 2>err && ok "default max_tokens fits batch_tokens on a long-context model" || bad "long context: $(cat err)"
printf '{"model": "model", "dataset": {"path": "p.jsonl", "max_tokens": 100}, "operations": [{"op": "target_probs"}], "batch_tokens": 64, "output": "lc2.h5"}' >lc2.json
expect_fail "max_tokens above batch_tokens names both fields" "set dataset.max_tokens <= 64 or raise batch_tokens" "$NNTERP" run lc2.json

# D8: one targets field per job.
printf '{"model": "model", "dataset": {"path": "p.jsonl"}, "operations": [{"op": "target_probs", "targets_field": "t1"}, {"op": "target_probs", "targets_field": "t2"}], "output": "x.h5"}' >twot.json
expect_fail "two ops naming two targets fields are refused" "targets_field 't2' differs from the job's targets field 't1'" "$NNTERP" run twot.json

# D9, D21, D14: a raw NUL, a BOM, an empty target list.
printf '{"text": "a\0b"}\n' >nul.jsonl
printf '{"model": "model", "dataset": {"path": "nul.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 1}], "output": "x.h5"}' >nul.json
expect_fail "a raw NUL in a JSONL line is refused" "nul.jsonl:1: a raw NUL byte" "$NNTERP" run nul.json
printf '\xef\xbb\xbfLily went to the park\n' >bom.txt
printf '{"text": "Lily went to the park"}\n' >bom.jsonl
for f in bom.txt bom.jsonl; do
  printf '{"model": "model", "dataset": {"path": "%s"}, "operations": [{"op": "generate", "max_new_tokens": 1}], "output": "%s.h5"}' $f $f >$f.json
  "$NNTERP" run $f.json >/dev/null 2>&1
done
$PY -c '
import h5py, numpy as np
a, b = h5py.File("bom.txt.h5", "r"), h5py.File("bom.jsonl.h5", "r")
assert np.array_equal(a["tokens/ids"][:], b["tokens/ids"][:]) and a["prompts/text"][:].tobytes() == b"Lily went to the park"' \
  && ok "a leading BOM is dropped in the text format as in JSONL" || bad "BOM"
printf '{"text": "Lily", "targets": {"a": []}}\n' >empty.jsonl
printf '{"model": "model", "dataset": {"path": "empty.jsonl"}, "operations": [{"op": "target_probs"}], "output": "x.h5"}' >empty.json
expect_fail "an empty target list is refused (job)" "empty.jsonl:1: target 'a' is an empty list" "$NNTERP" run empty.json
printf '{"prompt": "Lily", "targets": {"a": []}}\n' >pe.jsonl
expect_fail "an empty target list is refused (probs)" "pe.jsonl:1: targets.a is an empty list" "$NNTERP" probs -m model -f pe.jsonl
printf '{"prompt": "Lily", "targets": {"a": "x"}, "targets": {"a": "y"}}\n' >pd.jsonl
expect_fail "a duplicate key is refused (probs)" "pd.jsonl:1" "$NNTERP" probs -m model -f pd.jsonl
: >p0.jsonl
expect_fail "an empty prompts file is refused (probs)" "p0.jsonl: no prompts" "$NNTERP" probs -m model -f p0.jsonl

# D10: the steering factor's range and the vocabulary are checked before any store exists.
$PY -c 'import numpy as np; np.save("v.npy", np.ones(64, np.float32))'
printf '{"model": "model", "dataset": {"path": "p.jsonl"}, "operations": [{"op": "steer", "vector": "v.npy", "layers": [1], "factor": 1e308}], "output": "x.h5"}' >huge.json
expect_fail "a factor beyond float32 is refused naming the op" "operations[0] (steer): factor 1e+308 is outside the float32 range" "$NNTERP" run huge.json
printf '{"text": "Paris is the capital of France"}\n' >fr.jsonl
printf '{"model": "model", "tokenizer": "%s", "dataset": {"path": "fr.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 1}], "output": "tm.h5"}' "$SRC/models/demo/tokenizer.json" >tm.json
expect_fail "a tokenizer beyond the model's vocabulary is refused naming the line" "fr.jsonl:1: token id" "$NNTERP" run tm.json
! ls x.h5* tm.h5* >/dev/null 2>&1 && ok "no store left behind by refused jobs" || bad "a refused job left a store: $(ls x.h5* tm.h5* 2>/dev/null)"

# D12: the progress of a resume counts the committed shards and this run's rate.
mkjob d12.json d12.h5
interrupt d12.json 20
sum=$(md5sum d12.h5.partial d12.h5.partial.ledger)
"$NNTERP" run d12.json --resume --dry-run >out 2>err && grep -q "resume d12.h5.partial: 20 of" out &&
  [ "$(md5sum d12.h5.partial d12.h5.partial.ledger)" = "$sum" ] && ok "--dry-run --resume reports the committed shards, touching nothing" || bad "dry resume: $(cat out err)"
expect_fail "--dry-run --resume compares like --resume" "holds 120 prompts, the dataset d2.jsonl gives 60" "$NNTERP" run d2.json --resume --dry-run
"$NNTERP" run d12.json --resume --progress >out 2>err
first=$(tr '\r' '\n' <err | grep -m1 "prompts" | sed 's/nnterp: \([0-9]*\)\/.*/\1/')
finals=$(tr '\r' '\n' <err | grep -c "120/120 prompts")
[ -n "$first" ] && [ "$first" -gt 20 ] && [ "$finals" -eq 1 ] && ok "resume progress starts past the committed prompts ($first), one final line" || bad "progress: first '$first' finals $finals: $(tr '\r' '\n' <err | head -3)"

# The command line: D11 (trace of router probabilities on a dense model), D16 (one prompt: usage
# errors), D17 (plan validates before timing, no silent clamping), D18 (a file taken for a
# checkpoint says so), D19 (nothing on stdout after an error).
expect_fail "trace --save router_probabilities on a dense model is an error" "has no mixture of experts" \
  "$NNTERP" trace -m model -p "Lily" --save router_probabilities -o r.h5
[ ! -e r.h5 ] && ok "and writes no file" || bad "trace of router probabilities wrote r.h5"
"$NNTERP" patchscope -m model --source Lily --source Tom >out 2>err; [ $? -eq 2 ] && grep -q "give --source once" err && ok "two --source: a usage error" || bad "two --source: $(cat err)"
"$NNTERP" lens -m model -p A -p B >out 2>err; [ $? -eq 2 ] && grep -q "give one prompt" err && ok "lens with two prompts: a usage error" || bad "lens two prompts: $(head -2 err)"
expect_fail "plan refuses a prompt longer than a batch before timing" "does not fit in --batch-tokens 200" "$NNTERP" plan -m model --prompt-tokens 300 --batch-tokens 200
! grep -q "timing a batch" err && ok "no batch was timed" || bad "plan timed a batch before refusing"
"$NNTERP" plan -m model --batch-tokens 100000000 >out 2>err; [ $? -eq 2 ] && grep -q "out of range (1 to 16777216)" err && ok "plan states the real range" || bad "plan range: $(head -2 err)"
expect_fail "a tokenizer.json given as a model says what it was taken for" "was read as a llama2.c .bin checkpoint" "$NNTERP" inspect -m model/tokenizer.json
long=$($PY -c 'print(" ".join(["the dog"] * 400))')
"$NNTERP" steer -m model -p "$long" --vector v.npy --layers 1 --factor 1 >out 2>err
[ $? -eq 1 ] && [ ! -s out ] && grep -q "more than the model's context" err && ok "steer: a too-long prompt prints nothing on stdout" || bad "steer long: $(cat out err | head -3)"
"$NNTERP" lens -m model -p "Lily went" -o nodir/x.h5 >out 2>err
[ $? -eq 1 ] && [ ! -s out ] && ok "lens -o into a missing directory prints no table" || bad "lens -o nodir: $(head -3 out)"

finish test_store
