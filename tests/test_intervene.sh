#!/usr/bin/env bash
# The job operations skip_layers, attention_edit and object_attn_lens on the bundled model
# (models/demo), against each other and the job's other operations: a sweep's cell for layer l is
# the all-at-once skip of [l]; every op's baseline is target_probs' number; an attention scale of 1
# is the baseline bit for bit, a scale of 0 on the first key with renormalize moves it; the
# object-attention lens of a prompt into itself is its next-token distribution at every start
# layer. The store is bitwise the same under mpirun -np 1, -np 2 (two replicas) and -np 2 (two
# pipeline stages), and after an interrupted run resumed; malformed ops get errors naming the field.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_intervene h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo

$PY - "$SRC/examples/facts.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
with open("facts.jsonl", "w") as f:
    for i in range(36):
        f.write(json.dumps(rows[i % len(rows)]) + "\n")
PY
TARGET=$($PY -c 'import json; print(json.loads(open("facts.jsonl").readline())["text"])')
cat >job.json <<JOB
{"model": "$MODEL", "dataset": {"path": "facts.jsonl", "targets_field": "targets", "max_tokens": 64},
 "operations": [
   {"op": "target_probs"},
   {"op": "skip_layers", "layers": [1], "top_k": 4, "targets": true},
   {"op": "skip_layers", "layers": "all", "sweep": true, "top_k": 4, "targets": true},
   {"op": "skip_layers", "layers": [0, 2], "targets": true},
   {"op": "attention_edit", "layers": "all", "heads": "all", "queries": -1, "keys": [0],
    "scale": 1.0, "targets": true},
   {"op": "attention_edit", "layers": "all", "heads": "all", "queries": -1, "keys": [0],
    "scale": 0.0, "renormalize": true, "top_k": 4, "targets": true},
   {"op": "object_attn_lens", "target": "$TARGET", "attn_idx_patch": -1, "num_patches": 2,
    "layers": "all", "top_k": 4, "targets": true}],
 "batch_tokens": 64, "output": "out.h5"}
JOB
"$NNTERP" run job.json >/dev/null 2>err && ok "a job of target_probs, skip_layers, attention_edit and object_attn_lens runs" ||
  bad "the job: $(cat err)"

$PY - "$TARGET" <<'PY' && ok "skip_layers: a sweep's cell is the all-at-once skip of that layer; baselines are target_probs'" || bad "skip_layers disagrees with itself or with target_probs"
import sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
tp = f["target_probs"]
one, sweep, two = f["skip_layers"], f["skip_layers_2"], f["skip_layers_3"]
bad = []
def same(name, a, b):
    if not np.array_equal(np.asarray(a), np.asarray(b)):
        bad.append(name)
probs = tp["probs"][:] if "probs" in tp else tp["target_probs"][:]
L = sweep["layers"].shape[0]
assert sweep["target_probs"].shape[:2] == (36, L), sweep["target_probs"].shape
same("skip [1] = sweep cell 1 (target probs)", one["target_probs"][:], sweep["target_probs"][:, 1])
same("skip [1] = sweep cell 1 (top ids)", one["top_ids"][:], sweep["top_ids"][:, 1])
same("skip [1] = sweep cell 1 (top probs)", one["top_probs"][:], sweep["top_probs"][:, 1])
for g in (one, sweep, two):
    same("baseline of " + g.name, g["baseline_target_probs"][:], probs)
if np.array_equal(two["target_probs"][:], one["target_probs"][:]) or np.array_equal(
        one["target_probs"][:], probs):
    bad.append("skipping changed nothing, or [0, 2] equals [1]")
if bad:
    print(bad[:5], probs.shape, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

$PY - <<'PY' && ok "attention_edit: scale 1 is the baseline bit for bit; scale 0 on key 0, renormalized, moves the targets" || bad "attention_edit"
import sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
a, b = f["attention_edit"], f["attention_edit_2"]
ok = np.array_equal(a["target_probs"][:], a["baseline_target_probs"][:])
ok &= np.array_equal(b["baseline_target_probs"][:], a["baseline_target_probs"][:])
ok &= np.abs(b["target_probs"][:] - b["baseline_target_probs"][:]).max() > 1e-4
ok &= b.attrs["renormalize"] in ("true", b"true", True) and float(b.attrs["scale"]) == 0.0
ok &= b["top_probs"].shape == (36, 4) and (np.diff(b["top_probs"][:], axis=1) <= 0).all()
sys.exit(0 if ok else 1)
PY

$PY - "$TARGET" <<'PY' && ok "object_attn_lens: the target patched from itself is its next-token distribution at every start layer; other sources move it" || bad "object_attn_lens"
import sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
g, tp = f["object_attn_lens"], f["target_probs"]
text = f["prompts/text"][:].tobytes().decode()
off = f["prompts/text_offsets"][:]
texts = [text[off[i]:off[i + 1]] for i in range(len(off) - 1)]
probs = g["target_probs"][:]  # [source prompt, start layer, target token]
L = g["layers"].shape[0]
selfs = [i for i, t in enumerate(texts) if t == sys.argv[1]]
others = [i for i, t in enumerate(texts) if t != sys.argv[1]]
# Each source's targets are its dataset line's; for the target's own line, target_probs holds
# the same tokens' probabilities, unpatched.
tpp = tp["probs"][:] if "probs" in tp else tp["target_probs"][:]
ok = len(selfs) > 1 and probs.shape[1] == L and probs.shape[2] == tpp.shape[1]
for i in selfs:
    ok &= np.abs(probs[i] - tpp[selfs[0]][None, :]).max() < 1e-6
ok &= max(np.abs(probs[i] - probs[selfs[0]]).max() for i in others) > 1e-5
sys.exit(0 if ok else 1)
PY

mv out.h5 single.h5
layouts_and_resume job.json single.h5

# Malformed operations: an error naming the op and the field, and no store.
bad_op() { # expected-message op-json
  rm -f bad.h5 bad.h5.*
  printf '{"model": "%s", "dataset": {"path": "facts.jsonl", "targets_field": "targets"}, "operations": [%s], "output": "bad.h5"}\n' \
    "$MODEL" "$2" >bad.json
  "$NNTERP" run bad.json >/dev/null 2>err
  local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$1" err && [ ! -e bad.h5 ]; then ok "refused: $2"; else
    bad "$2: rc $rc, $(head -2 err)"; fi
}
bad_op "layers" '{"op": "skip_layers", "layers": [99]}'
bad_op "sweep" '{"op": "skip_layers", "sweep": 3}'
bad_op "scale" '{"op": "attention_edit", "keys": [0], "scale": -1}'
bad_op "heads" '{"op": "attention_edit", "keys": [0], "scale": 0, "heads": [99]}'
bad_op "target" '{"op": "object_attn_lens"}'
bad_op "num_patches" '{"op": "object_attn_lens", "target": "The capital of France is", "attn_idx_patch": -1, "num_patches": 0}'
bad_op "unknown" '{"op": "attention_edit", "keys": [0], "scale": 0, "shift": 1}'
finish test_intervene
