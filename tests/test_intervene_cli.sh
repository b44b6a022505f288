#!/usr/bin/env bash
# nnterp skip, attn-edit and object-lens (cli/intervene.c) on the bundled model (models/demo):
# each command's --json equals the job store of skip_layers, attention_edit and object_attn_lens
# bit for bit (top-k ids and probabilities, the targets' probabilities, the baselines), prompt by
# prompt; the tables print; missing or bad flags are usage errors (exit 2) that name the flag.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_intervene_cli h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo
TARGET="The capital of Germany is"

# Prompts of different lengths (a batch packs them), single-word targets (one --targets word each).
$PY - <<'PY'
import json
rows = [("The capital of France is", "Paris", "Berlin"),
        ("Everyone knows that the capital of Italy is", "Rome", "Paris"),
        ("The dog says", "woof", "meow"),
        ("The capital of Japan is", "Tokyo", "Madrid")]
with open("facts.jsonl", "w") as f:
    for t, a, b in rows:
        f.write(json.dumps({"text": t, "targets": {"a": a, "b": b}}) + "\n")
with open("rows.tsv", "w") as f:
    for t, a, b in rows:
        f.write("%s\t%s,%s\n" % (t, a, b))
PY
cat >job.json <<JOB
{"model": "$MODEL", "dataset": {"path": "facts.jsonl", "targets_field": "targets", "max_tokens": 64},
 "operations": [
   {"op": "skip_layers", "layers": [1, 3], "top_k": 5, "targets": true},
   {"op": "skip_layers", "layers": "all", "sweep": true, "top_k": 3, "targets": true},
   {"op": "attention_edit", "layers": "1:3", "heads": [0, 2], "queries": [-1, 1], "keys": [0, 2],
    "scale": 0.5, "renormalize": true, "top_k": 4, "targets": true},
   {"op": "attention_edit", "keys": [1], "queries": "all", "scale": 0, "targets": true},
   {"op": "object_attn_lens", "target": "$TARGET", "attn_idx_patch": -2, "num_patches": 2,
    "layers": "0,2", "top_k": 3, "targets": true},
   {"op": "object_attn_lens", "target": "$TARGET", "attn_idx_patch": -1, "targets": true}],
 "batch_tokens": 64, "output": "out.h5"}
JOB
"$NNTERP" run job.json >/dev/null 2>err && ok "the job of skip_layers, attention_edit and object_attn_lens runs" ||
  bad "the job: $(cat err)"

i=0
while IFS=$'\t' read -r text words; do
  run() { # name, command...
    local name=$1
    shift
    "$NNTERP" "$@" --targets "$words" --json >"$name$i.json" 2>err </dev/null || bad "$name $i: $(cat err)"
  }
  run skip skip -m "$MODEL" -p "$text" --layers 1,3 -k 5
  run sweep skip -m "$MODEL" -p "$text" --layers all --sweep -k 3
  run edit attn-edit -m "$MODEL" -p "$text" --layers 1:3 --head 0,2 --query -1,1 --key 0,2 --scale 0.5 \
    --renormalize -k 4
  run zero attn-edit -m "$MODEL" -p "$text" --key 1 --query all --scale 0
  run lens object-lens -m "$MODEL" --source "$text" --target "$TARGET" --index -2 --num-patches 2 \
    --layers 0,2 -k 3
  run lens_all object-lens -m "$MODEL" --source "$text" --target "$TARGET" --index -1
  i=$((i + 1))
done <rows.tsv

$PY - <<'PY' && ok "skip, attn-edit and object-lens --json equal the job's store bit for bit, prompt by prompt" || bad "the commands differ from the job's store"
import json, sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
bad = []
def same(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.array_equal(got, want):
        bad.append("%s: %s != %s" % (name, got.tolist(), want.tolist()))
def row(name, r, g, p, prefix="", slot=None):
    ids, probs, tp = (g[prefix + n][p] for n in ("top_ids", "top_probs", "target_probs"))
    if slot is not None:
        ids, probs, tp = ids[slot], probs[slot], tp[slot]
    same(name + " ids", [t["id"] for t in r["top"]], ids)
    same(name + " probs", np.float32([t["prob"] for t in r["top"]]), probs)
    same(name + " targets", np.float32(r["target_probs"]), tp)
for p in range(4):
    j = lambda n: json.load(open("%s%d.json" % (n, p)))
    s, w, e, z, l, la = j("skip"), j("sweep"), j("edit"), j("zero"), j("lens"), j("lens_all")
    g = f["skip_layers"]
    row("skip %d baseline" % p, s["baseline"], g, p, "baseline_")
    assert len(s["skipped"]) == 1 and s["skipped"][0]["layers"] == [1, 3], s["skipped"]
    row("skip %d" % p, s["skipped"][0], g, p)
    g = f["skip_layers_2"]
    row("sweep %d baseline" % p, w["baseline"], g, p, "baseline_")
    assert [r["layers"] for r in w["skipped"]] == [[l] for l in g["layers"][:]]
    for k, r in enumerate(w["skipped"]):
        row("sweep %d layer %d" % (p, k), r, g, p, slot=k)
    for name, o, g in (("edit", e, f["attention_edit"]), ("zero", z, f["attention_edit_2"])):
        row("%s %d baseline" % (name, p), o["baseline"], g, p, "baseline_")
        row("%s %d" % (name, p), o["edited"], g, p)
    assert e["layers"] == [1, 2] and e["heads"] == [0, 2] and e["queries"] == [-1, 1], e
    assert z["heads"] == "all" and z["queries"] == "all" and z["scale"] == 0, z
    for name, o, g in (("lens", l, f["object_attn_lens"]), ("lens all", la, f["object_attn_lens_2"])):
        assert [r["start_layer"] for r in o["patched"]] == list(g["layers"][:]), o["layers"]
        for k, r in enumerate(o["patched"]):
            row("%s %d start %d" % (name, p, k), r, g, p, slot=k)
    assert l["num_patches"] == 2 and la["num_patches"] == 5 and l["attn_idx_patch"] == -2
    # the edits moved something (the comparison is not of two unedited passes)
    if s["skipped"][0]["target_probs"] == s["baseline"]["target_probs"] or \
            e["edited"]["target_probs"] == e["baseline"]["target_probs"]:
        bad.append("prompt %d: an edit changed nothing" % p)
if bad:
    print("\n".join(bad[:5]), file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# The tables.
"$NNTERP" skip -m "$MODEL" -p "The capital of France is" --layers 1 --targets Paris -k 3 >table 2>err &&
  grep -q "^  baseline " table && grep -q "^  skip 1 " table && grep -q "p('Paris')" table &&
  ok "nnterp skip prints the baseline and skipped rows" || bad "skip table: $(cat table err | head -5)"
"$NNTERP" skip -m "$MODEL" -p "The capital of France is" --layers 0:2 --sweep >table 2>err &&
  grep -q "^  skip 0 " table && grep -q "^  skip 1 " table && ! grep -q "^  skip 2 " table &&
  ok "nnterp skip --sweep prints a row per layer" || bad "skip --sweep table: $(cat table err | head -5)"
"$NNTERP" attn-edit -m "$MODEL" -p "The capital of France is" --key 0 --scale 0 >table 2>err &&
  grep -q "^  edited " table && ok "nnterp attn-edit prints the baseline and edited rows" ||
  bad "attn-edit table: $(cat table err | head -5)"
"$NNTERP" object-lens -m "$MODEL" --source "The capital of France is" --target "$TARGET" --index -1 \
  --layers 3 >table 2>err && grep -q "^  start 3 " table && [ "$(grep -c '^  start' table)" = 1 ] &&
  ok "nnterp object-lens prints a row per start layer" || bad "object-lens table: $(cat table err | head -5)"

# Usage errors: exit 2, a message naming the flag, nothing on stdout.
usage() { # expected-message, command...
  local want=$1
  shift
  "$NNTERP" "$@" >out 2>err
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$want" err && [ ! -s out ]; then ok "usage error: $* ($want)"; else
    bad "$*: rc $rc, $(head -2 err)"; fi
}
P="The capital of France is"
usage "--layers SPEC (the layers to skip) is required" skip -m "$MODEL" -p "$P"
usage "-p TEXT (the prompt) is required" skip -m "$MODEL" --layers 1
usage "--layers: layer spec: layer 99 is out of range" skip -m "$MODEL" -p "$P" --layers 99
usage "--key K\[,K..\] and --scale F are required" attn-edit -m "$MODEL" -p "$P" --scale 0
usage "--key K\[,K..\] and --scale F are required" attn-edit -m "$MODEL" -p "$P" --key 0
usage "--scale takes a finite factor >= 0" attn-edit -m "$MODEL" -p "$P" --key 0 --scale -1
usage "--head 7 is out of range (the model has 4 heads)" attn-edit -m "$MODEL" -p "$P" --key 0 --scale 0 --head 7
usage "--key 9 is past the prompt's 5 tokens" attn-edit -m "$MODEL" -p "$P" --key 9 --scale 0
usage "--key: " attn-edit -m "$MODEL" -p "$P" --key -1 --scale 0
usage "--query 5 is past the prompt's 5 tokens" attn-edit -m "$MODEL" -p "$P" --key 0 --scale 0 --query 5
usage "--layers: " attn-edit -m "$MODEL" -p "$P" --key 0 --scale 0 --layers 4
usage "--index I (the target position patched, attn_idx_patch) is required" object-lens -m "$MODEL" \
  --source "$P" --target "$TARGET"
usage "--source TEXT and --target TEXT are required" object-lens -m "$MODEL" --source "$P" --index -1
usage "--index 9 is outside the target prompt (5 tokens)" object-lens -m "$MODEL" --source "$P" \
  --target "$TARGET" --index 9
usage "--num-patches takes a layer count from 1" object-lens -m "$MODEL" --source "$P" --target "$TARGET" \
  --index -1 --num-patches 0
usage "--layers: " object-lens -m "$MODEL" --source "$P" --target "$TARGET" --index -1 --layers 0:9:0
usage "-k 2000 exceeds the vocabulary (1024)" skip -m "$MODEL" -p "$P" --layers 1 -k 2000
finish test_intervene_cli
