#!/usr/bin/env bash
# nnterp run (the main job) end to end, read back with h5py as a user would:
# - each prompt's activations equal `nnterp trace` of that prompt alone (float32: bitwise;
#   bfloat16/float16: the float32 values rounded);
# - tokens, offsets and prompt text round-trip exactly;
# - kill -9 mid-job then --resume gives a store identical to an uninterrupted run, and a killed
#   store never appears under the final name; SIGTERM drains, commits and exits 3;
# - several operations in one job equal the same operations run one per job;
# - bad jobs, datasets, outputs and a full disk give clear errors and leave no final store.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_run models/stories260K
need_python test_run h5py numpy
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
MODEL=$S/models/stories260K/hf
PY=/usr/bin/python3

# A dataset of varied prompts with targets; many small shards so a kill lands mid-job.
$PY - <<'PY'
import json, random
random.seed(3)
names = ["Lily", "Tom", "Sue", "Ben"]
words = "the dog cat park ball tree happy sad big little red blue saw went played with a and to".split()
with open("prompts.jsonl", "w") as f:
    for i in range(240):
        text = random.choice(names) + " " + " ".join(random.choice(words) for _ in range(random.randint(2, 14)))
        if i % 17 == 0:
            text += " café 😀"
        f.write(json.dumps({"text": text, "targets": {"a": random.sample(names, 2), "b": ["park", "ball"]}}) + "\n")
PY
job() { # name dtype operations-json [extra]
  cat >"$1.json" <<JOB
{"model": "$MODEL", "dataset": {"path": "prompts.jsonl", "max_tokens": 48},
 "operations": $3, "dtype": "$2", "batch_tokens": 64, "output": "$1.h5" ${4:-}}
JOB
}
ALL_OPS='[{"op": "collect", "hooks": ["layers_output", "attentions_output", "ln_final"], "layers": "all"},
 {"op": "collect", "hooks": ["mlps_input"], "layers": [0, -1], "positions": [-1, 0]},
 {"op": "logit_lens", "top_k": 4, "targets": true},
 {"op": "target_probs"},
 {"op": "patchscope_lens", "layers": "1:4", "top_k": 3},
 {"op": "generate", "max_new_tokens": 6}]'
job full float32 "$ALL_OPS"
"$NNTERP" run full.json >out 2>err && [ -f full.h5 ] && [ ! -e full.h5.partial ] && [ ! -e full.h5.partial.ledger ] \
  && ok "a job with six operations completes" || bad "full job: $(cat out err)"

# Activations equal nnterp trace of each prompt alone, bit for bit.
$PY - "$NNTERP" "$MODEL" <<'PY' && ok "store rows equal nnterp trace of each prompt alone (bitwise)" || bad "store vs trace"
import h5py, json, subprocess, sys, numpy as np
nnterp, model = sys.argv[1:3]
f = h5py.File("full.h5", "r")
offs, tf = f["prompts/token_offsets"][:], f["prompts/text_offsets"][:]
text = f["prompts/text"][:].tobytes()
lines = [json.loads(l)["text"] for l in open("prompts.jsonl")]
assert len(offs) == len(lines) + 1
for p in [0, 1, 17, 100, 239]:
    prompt = text[tf[p]:tf[p + 1]].decode()
    assert prompt == lines[p], (prompt, lines[p])
    subprocess.run([nnterp, "trace", "-m", model, "-p", prompt, "--save",
                    "layers_output,attentions_output,ln_final,mlps_input", "-o", "t.h5"], check=True,
                   stderr=subprocess.DEVNULL)
    t = h5py.File("t.h5", "r")
    assert np.array_equal(t["tokens/ids"][:], f["tokens/ids"][offs[p]:offs[p + 1]])
    for l in range(5):
        for h in ["layers_output", "attentions_output"]:
            a, b = t[f"activations/{h}/{l}"][:], f[f"activations/{h}/{l}"][offs[p]:offs[p + 1]]
            assert np.array_equal(a, b), (p, h, l, np.abs(a - b).max())
    assert np.array_equal(t["activations/ln_final"][:], f["activations/ln_final"][offs[p]:offs[p + 1]])
    # the second collect: mlps_input of layers 0 and -1 at positions [-1, 0], two rows a prompt
    for l in (0, 4):
        m, rows = t[f"activations/mlps_input/{l}"][:], f[f"activations_2/mlps_input/{l}"][2 * p:2 * p + 2]
        assert np.array_equal(rows[0], m[-1]) and np.array_equal(rows[1], m[0]), (p, l)
    t.close()
# chosen positions: rows (prompt, [-1, 0]) and their token_index
ti = f["activations_2/token_index"][:]
assert list(ti[:4]) == [offs[1] - 1, offs[0], offs[2] - 1, offs[1]], ti[:4]
# the lens: one row per prompt (positions "last"), every layer, top 4
lens = f["logit_lens/top_ids"][:]
assert lens.shape == (240, 5, 4)
assert f.attrs["status"] == "complete" and f.attrs["format"] == "nnterp-store"
assert json.loads(f.attrs["job"])["dtype"] == "float32"
assert (f["progress/shard_done"][:] == 1).all()
PY

# bfloat16 and float16 stores hold the float32 values rounded to nearest even.
job bf bfloat16 '[{"op": "collect", "hooks": ["layers_output"], "layers": [2]}]'
job hf float16 '[{"op": "collect", "hooks": ["layers_output"], "layers": [2]}]'
"$NNTERP" run bf.json >/dev/null 2>&1 && "$NNTERP" run hf.json >/dev/null 2>&1
$PY - <<'PY' && ok "bfloat16 / float16 stores equal the float32 values rounded" || bad "bf16/f16 rounding"
import h5py, numpy as np
x = h5py.File("full.h5")["activations/layers_output/2"][:]
b = h5py.File("bf.h5")["activations/layers_output/2"][:]
h = h5py.File("hf.h5")["activations/layers_output/2"][:]
u = x.view(np.uint32).astype(np.uint64)
r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)
assert np.array_equal(b, r), np.abs(b - r).max()
assert h.dtype == np.float16 and np.array_equal(h, x.astype(np.float16))
PY

# Several operations in one job equal the same operations one per job.
i=0
for op in $(echo "$ALL_OPS" | $PY -c "import json,sys; [print(json.dumps(o).replace(' ', '')) for o in json.load(sys.stdin)]"); do
  job "one$i" float32 "[$op]"
  "$NNTERP" run "one$i.json" >/dev/null 2>&1 || bad "single-op job $i"
  i=$((i + 1))
done
$PY - <<'PY' && ok "six operations in one job equal six one-operation jobs" || bad "combined vs separate"
import h5py, numpy as np
full = h5py.File("full.h5")
names = {0: "activations", 1: "activations", 2: "logit_lens", 3: "target_probs", 4: "patchscope_lens", 5: "generate"}
for i in range(6):
    one = h5py.File(f"one{i}.h5")
    def check(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith(("progress", "prompts", "tokens", "targets")):
            other = name.replace("activations", "activations_2", 1) if i == 1 else name
            assert np.array_equal(obj[:], full[other][:]), (i, name)
    one.visititems(check)
PY

# kill -9 at random points, then --resume: identical to the uninterrupted store.
job crash float32 "$ALL_OPS"
for seed in 1 2 3; do
  rm -f crash.h5 crash.h5.partial crash.h5.partial.ledger
  "$NNTERP" run crash.json >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((seed * 3))"
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ -e crash.h5 ] && [ -e crash.h5.partial ] && bad "seed $seed: both final and partial exist"
  if [ -e crash.h5 ]; then skip "seed $seed: the job finished before the kill"; continue; fi
  echo "     (seed $seed: killed with $(grep -c shard crash.h5.partial.ledger 2>/dev/null || echo 0) shards committed)"
  "$NNTERP" run crash.json --resume >out 2>err || { bad "resume after kill -9 (seed $seed): $(cat err)"; continue; }
  $PY - <<'PY' && ok "kill -9 (seed $seed) then --resume equals the uninterrupted store" || bad "kill -9 seed $seed"
import h5py, numpy as np
a, b = h5py.File("full.h5"), h5py.File("crash.h5")
def check(name, obj):
    if isinstance(obj, h5py.Dataset):
        assert np.array_equal(obj[:], b[name][:]), name
a.visititems(check)
assert b.attrs["status"] == "complete"
PY
done

# SIGTERM drains the batch, commits, exits 3; --resume finishes.
rm -f crash.h5*
"$NNTERP" run crash.json >out 2>err &
pid=$!; sleep 0.4; kill -TERM $pid; wait $pid; code=$?
if [ $code -eq 3 ] && grep -q "resume" err && [ -e crash.h5.partial ] && [ ! -e crash.h5 ]; then
  "$NNTERP" run crash.json --resume >out 2>err && grep -q "(resumed)" out && ok "SIGTERM exits 3 with a resumable store" || bad "resume after SIGTERM: $(cat err)"
elif [ $code -eq 0 ]; then skip "SIGTERM arrived after the job finished (nothing to drain)"
else bad "SIGTERM: exit $code: $(cat err)"; fi

# --resume refuses another job.
rm -f crash.h5*
"$NNTERP" run crash.json >/dev/null 2>&1 & pid=$!; sleep 0.3; kill -9 $pid; wait $pid 2>/dev/null
if [ -e crash.h5.partial ]; then
  sed -i 's/"max_new_tokens": 6/"max_new_tokens": 7/' crash.json
  "$NNTERP" run crash.json --resume >out 2>err; code=$?
  [ $code -eq 1 ] && grep -q "different job" err && ok "--resume refuses a different job" || bad "resume different job: $code $(cat err)"
elif [ -e crash.h5 ]; then skip "the job finished before the kill (--resume of another job untested)"
else bad "kill -9 left no partial store"; fi

expect() { # name needle command...
  local name=$1 needle=$2; shift 2
  "$@" >out 2>err; local rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$needle" err; then ok "$name"; else bad "$name (exit $rc: $(cat err))"; fi
}
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl"}, "operations": [{"op": "collect", "hooks": ["layers_output"]}], "output": "x.h5", "dtyp": "bfloat16"}' "$MODEL" >typo.json
expect "unknown job field" "unknown field 'dtyp'" "$NNTERP" run typo.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl"}, "operations": [{"op": "colect"}], "output": "x.h5"}' "$MODEL" >badop.json
expect "unknown op" "op 'colect' is not one of" "$NNTERP" run badop.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl"}, "operations": [{"op": "collect", "hooks": ["layer_output"]}], "output": "x.h5"}' "$MODEL" >badhook.json
expect "unknown hook" "'layer_output' is not a hook point name" "$NNTERP" run badhook.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl"}, "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": [9]}], "output": "x.h5"}' "$MODEL" >badlayer.json
expect "layer out of range" "layer 9 is out of range" "$NNTERP" run badlayer.json
printf '{"model": "%s", "dataset": {"path": "nope.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "x.h5"}' "$MODEL" >nods.json
expect "missing dataset" "nope.jsonl: cannot open" "$NNTERP" run nods.json
printf '{"text": "ok"}\n{"text": "bad \xff byte"}\n' >badutf.jsonl
printf '{"model": "%s", "dataset": {"path": "badutf.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "x.h5"}' "$MODEL" >badutf.json
expect "invalid UTF-8" "badutf.jsonl:2: invalid UTF-8" "$NNTERP" run badutf.json
printf '{"text": "ok"}\n{"txt": "no field"}\n' >nofield.jsonl
printf '{"model": "%s", "dataset": {"path": "nofield.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "x.h5"}' "$MODEL" >nofield.json
expect "missing field" "nofield.jsonl:2: field 'text' missing" "$NNTERP" run nofield.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl", "max_tokens": 4}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "x.h5"}' "$MODEL" >long.json
expect "prompt longer than max_tokens" "more than max_tokens 4" "$NNTERP" run long.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl", "max_tokens": 4096}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "x.h5"}' "$MODEL" >ctx.json
expect "max_tokens beyond the context" "exceeds the model's context of 512" "$NNTERP" run ctx.json
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl"}, "operations": [{"op": "generate", "max_new_tokens": 2}], "output": "/nonexistent/x.h5"}' "$MODEL" >noout.json
expect "unwritable output" "cannot create the output file" "$NNTERP" run noout.json
[ ! -e x.h5 ] && ok "no store under the final name after errors" || bad "a failed job left x.h5"
# A llama2.c checkpoint without a "tokenizer" field: tok512.bin beside it is found, and it
# tokenizes the dataset as the HF copy's tokenizer.json does.
printf '{"model": "%s", "dataset": {"path": "prompts.jsonl", "max_tokens": 48}, "operations": [{"op": "collect", "hooks": ["ln_final"]}], "output": "bin.h5"}' "$S/models/stories260K/stories260K.bin" >bin.json
if "$NNTERP" run bin.json >out 2>err && $PY -c '
import h5py, numpy as np
a, b = h5py.File("bin.h5", "r"), h5py.File("full.h5", "r")
assert np.array_equal(a["tokens/ids"][:], b["tokens/ids"][:])
assert np.array_equal(a["prompts/token_offsets"][:], b["prompts/token_offsets"][:])'; then
  ok "a llama2.c checkpoint finds tok512.bin beside it; the same tokens as tokenizer.json"
else
  bad "llama2.c run without a tokenizer field: $(cat out err)"
fi
# A full disk: the file size limit stops writes midway.
job disk float32 '[{"op": "collect", "hooks": ["layers_output", "mlps_output", "attentions_output"], "layers": "all"}]'
(ulimit -f 200; "$NNTERP" run disk.json >out 2>err); code=$?
if [ $code -eq 1 ] && [ ! -e disk.h5 ] && grep -q "disk full" err; then ok "a full disk is a clear error and no final store"; else bad "full disk: exit $code, $(cat err)"; fi

finish test_run
